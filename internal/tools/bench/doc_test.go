package main

import (
	"strings"
	"testing"
)

func TestReplaceSection(t *testing.T) {
	doc := "# Benchmarks\n\nBy hand.\n\n<!-- scripts/bench: begin put -->\nold\ntable\n<!-- scripts/bench: end put -->\n\n## Playback\n\nBy hand too.\n"
	got, err := replaceSection([]byte(doc), "put", "new table")
	if err != nil {
		t.Fatal(err)
	}
	want := "# Benchmarks\n\nBy hand.\n\n<!-- scripts/bench: begin put -->\nnew table\n<!-- scripts/bench: end put -->\n\n## Playback\n\nBy hand too.\n"
	if string(got) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	// Again: the same result, nothing accumulates.
	again, _ := replaceSection(got, "put", "new table\n")
	if string(again) != want {
		t.Fatalf("second replacement:\n%s", again)
	}
	if _, err := replaceSection([]byte(doc), "serve", "x"); err == nil || !strings.Contains(err.Error(), "serve") {
		t.Fatalf("missing markers: %v", err)
	}
	twice := doc + "<!-- scripts/bench: begin put -->\n<!-- scripts/bench: end put -->\n"
	if _, err := replaceSection([]byte(twice), "put", "x"); err == nil {
		t.Fatal("markers twice accepted")
	}
}
