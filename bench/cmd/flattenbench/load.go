package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// corpus is the set of resources every measurement runs over, as the bytes
// they had in their files (pretty-printed Bundles keep their indentation).
type corpus struct {
	docs   [][]byte
	types  []string // resourceType of each doc
	bytes  int64
	files  int
	byType map[string][]int // indexes into docs
}

// loadCorpus reads every *.json, *.json.gz, *.ndjson and *.ndjson.gz file in
// dir: NDJSON lines and Bundle entries become one resource each.
func loadCorpus(dir string) (*corpus, error) {
	var files []string
	for _, pat := range []string{"*.json", "*.json.gz", "*.ndjson", "*.ndjson.gz"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("no FHIR files in %s", dir)
	}
	c := &corpus{byType: map[string][]int{}}
	for _, f := range files {
		data, err := readFile(f)
		if err != nil {
			return nil, err
		}
		c.files++
		name := strings.TrimSuffix(f, ".gz")
		if strings.HasSuffix(name, ".ndjson") {
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(nil, 256<<20)
			for sc.Scan() {
				if line := bytes.TrimSpace(sc.Bytes()); len(line) > 0 {
					if err := c.add(bytes.Clone(line)); err != nil {
						return nil, fmt.Errorf("%s: %w", f, err)
					}
				}
			}
			if err := sc.Err(); err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			continue
		}
		if err := c.add(data); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
	}
	return c, nil
}

// add adds a resource, or the entries of a Bundle.
func (c *corpus) add(doc []byte) error {
	var head struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(doc, &head); err != nil {
		return err
	}
	if head.ResourceType == "Bundle" {
		for _, e := range head.Entry {
			if len(e.Resource) > 0 {
				if err := c.add(e.Resource); err != nil {
					return err
				}
			}
		}
		return nil
	}
	c.byType[head.ResourceType] = append(c.byType[head.ResourceType], len(c.docs))
	c.docs = append(c.docs, doc)
	c.types = append(c.types, head.ResourceType)
	c.bytes += int64(len(doc))
	return nil
}

// subset returns the docs of one resource type and their size.
func (c *corpus) subset(resourceType string) ([][]byte, int64) {
	var out [][]byte
	var n int64
	for _, i := range c.byType[resourceType] {
		out = append(out, c.docs[i])
		n += int64(len(c.docs[i]))
	}
	return out, n
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		gz, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		defer gz.Close()
		r = gz
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}
