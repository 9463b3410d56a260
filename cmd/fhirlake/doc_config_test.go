package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// configDocs are the documents whose ```yaml blocks are pieces of
// fhirlake.yaml.
var configDocs = []string{"docs/operations.md"}

// fencedBlocks returns the blocks of one Markdown document fenced as
// ```lang, each with the skip directive of the line before its fence.
func fencedBlocks(file string, data []byte, lang string) []docBlock {
	var (
		blocks []docBlock
		cur    *docBlock
		prev   string
		n      int
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case cur != nil && trimmed == "```":
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		case trimmed == "```"+lang:
			cur = &docBlock{file: file, line: n}
			if m := skipDirective.FindStringSubmatch(strings.TrimSpace(prev)); m != nil {
				cur.skip = m[1]
			}
		}
		prev = line
	}
	return blocks
}

// TestOperationsConfigExamples: every ```yaml block of the operations guide
// is a piece of fhirlake.yaml that `fhirlake config validate` accepts, laid
// over a configuration of one local tenant (a block's own sections replace
// that configuration's), with each environment variable it names by an
// *_env key set — unless the line before its fence says why not
// (<!-- doc-test: skip: Helm values -->).
func TestOperationsConfigExamples(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, doc := range configDocs {
		data, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range fencedBlocks(doc, data, "yaml") {
			name := b.file + ":" + strconv.Itoa(b.line)
			if b.skip != "" {
				t.Logf("%s: not checked: %s", name, b.skip)
				continue
			}
			checked++
			t.Run(name, func(t *testing.T) {
				var piece map[string]any
				if err := yaml.Unmarshal([]byte(b.text), &piece); err != nil {
					t.Fatalf("not YAML: %v\n%s", err, b.text)
				}
				dir := t.TempDir()
				conf := map[string]any{
					"work_dir": filepath.Join(dir, "work"),
					"tenants":  []any{map[string]any{"name": "acme", "store": map[string]any{"type": "local", "path": filepath.Join(dir, "acme")}}},
				}
				for k, v := range piece {
					conf[k] = v
				}
				for _, name := range envNames(piece) {
					t.Setenv(name, "set-by-the-test")
				}
				out, err := yaml.Marshal(conf)
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(dir, "fhirlake.yaml")
				if err := os.WriteFile(path, out, 0o644); err != nil {
					t.Fatal(err)
				}
				if got, err := runCommand("config", "validate", path); err != nil {
					t.Errorf("fhirlake config validate: %v\n%s\nthe block:\n%s", err, got, b.text)
				}
			})
		}
	}
	if checked == 0 {
		t.Fatal("no configuration examples found: the document list is out of date")
	}
}

// envNames are the values of every key ending in _env in v: the
// environment variables a configuration names.
func envNames(v any) []string {
	var names []string
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if s, ok := e.(string); ok && strings.HasSuffix(k, "_env") && s != "" {
				names = append(names, s)
				continue
			}
			names = append(names, envNames(e)...)
		}
	case []any:
		for _, e := range v {
			names = append(names, envNames(e)...)
		}
	}
	return names
}
