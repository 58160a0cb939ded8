package server

import (
	"regexp"
	"testing"
)

// tagTextRE is the service model's pattern that tagText implements.
var tagTextRE = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)

func TestTagTextIsTheModelsPattern(t *testing.T) {
	for _, s := range []string{"", "camera-1", "owner:ops@example.com", "a b", "a\u00a0b", "Ünïcødé", "日本", "x\ty", "a#b", "½", "a\xffb", "a\nb", "café/2=1+1"} {
		if got, want := tagText(s), tagTextRE.MatchString(s); got != want {
			t.Errorf("tagText(%q) = %v, the model's pattern says %v", s, got, want)
		}
	}
}

func FuzzTagText(f *testing.F) {
	for _, s := range []string{"camera-1", "a b", "a#b", "日本", "a\xffb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := tagText(s), tagTextRE.MatchString(s); got != want {
			t.Errorf("tagText(%q) = %v, the model's pattern says %v", s, got, want)
		}
	})
}
