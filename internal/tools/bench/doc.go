package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
)

// The generated sections of docs/BENCHMARKS.md sit between these markers;
// everything else in the file is written by hand and kept.
func markers(name string) (begin, end []byte) {
	return []byte("<!-- scripts/bench: begin " + name + " -->\n"), []byte("<!-- scripts/bench: end " + name + " -->")
}

// replaceSection puts body between the markers of the named section.
func replaceSection(doc []byte, name, body string) ([]byte, error) {
	begin, end := markers(name)
	i := bytes.Index(doc, begin)
	j := bytes.Index(doc, end)
	if i < 0 || j < i {
		return nil, fmt.Errorf("docs/BENCHMARKS.md has no %q … %q markers for the %s section: put them back where the section goes",
			bytes.TrimSpace(begin), end, name)
	}
	if bytes.Count(doc, begin) > 1 || bytes.Count(doc, end) > 1 {
		return nil, fmt.Errorf("docs/BENCHMARKS.md has the %s markers more than once", name)
	}
	var out bytes.Buffer
	out.Write(doc[:i+len(begin)])
	out.WriteString(body)
	if len(body) > 0 && body[len(body)-1] != '\n' {
		out.WriteByte('\n')
	}
	out.Write(doc[j:])
	return out.Bytes(), nil
}

func commandOutput(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).Output()
	return string(out), err
}
