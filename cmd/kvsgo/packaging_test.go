package main

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// putFlagNames lists the flags `kvsgo help put` shows.
func putFlagNames(t *testing.T) []string {
	t.Helper()
	_, _, help := runCLI("help", "put")
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^  -([a-z0-9-]+)`).FindAllStringSubmatch(help, -1) {
		names = append(names, m[1])
	}
	if !slices.Contains(names, "source") || !slices.Contains(names, "iot-thing-name") {
		t.Fatalf("put's help lists %v", names)
	}
	return names
}

// TestExampleConfig: every key of the example config shipped with the
// release is a `kvsgo put` flag, as `kvsgo run --config` reads it, and
// every stream has a stream and a source.
func TestExampleConfig(t *testing.T) {
	flags := putFlagNames(t)
	b, err := os.ReadFile("../../packaging/kvsgo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	top := doc.Content[0]
	checkKeys := func(m *yaml.Node, where string) map[string]bool {
		seen := map[string]bool{}
		for i := 0; i < len(m.Content); i += 2 {
			k := m.Content[i].Value
			if !slices.Contains(flags, k) {
				t.Errorf("%s: line %d: %q is not a kvsgo put flag", where, m.Content[i].Line, k)
			}
			seen[k] = true
		}
		return seen
	}
	var streams *yaml.Node
	rest := &yaml.Node{Kind: yaml.MappingNode}
	for i := 0; i < len(top.Content); i += 2 {
		if top.Content[i].Value == "streams" {
			streams = top.Content[i+1]
			continue
		}
		rest.Content = append(rest.Content, top.Content[i], top.Content[i+1])
	}
	checkKeys(rest, "top level")
	if streams == nil || len(streams.Content) < 2 {
		t.Fatal("no streams")
	}
	for _, s := range streams.Content {
		seen := checkKeys(s, "stream")
		if !seen["stream"] || !seen["source"] {
			t.Errorf("line %d: a stream without stream: or source:", s.Line)
		}
	}
}

// TestServiceUnit: the unit runs `kvsgo run` on the config the release
// ships, as a dedicated user allowed to use cameras, restarted on failure.
func TestServiceUnit(t *testing.T) {
	b, err := os.ReadFile("../../packaging/kvsgo.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{
		"\nExecStart=/usr/local/bin/kvsgo run --config /etc/kvsgo/kvsgo.yaml\n",
		"\nRestart=on-failure\n", "\nUser=kvsgo\n", "\nSupplementaryGroups=video\n", "\nStateDirectory=kvsgo\n", "\nKillMode=mixed\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
}
