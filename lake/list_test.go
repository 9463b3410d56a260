package lake

import (
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

func TestListSpeed(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	file := func(size int) *fstest.MapFile { return &fstest.MapFile{Data: make([]byte, size), ModTime: at} }
	fsys := fstest.MapFS{
		"speed/resources/date=2026-01-02/t-0-5-9.parquet":  file(3),
		"speed/resources/date=2026-01-01/t-0-0-4.parquet":  file(2),
		"speed/patient/date=2026-01-01/t-0-0-4.parquet":    file(1),
		"speed/resources/date=2026-01-01/.put-1":           file(1),
		"speed/resources/date=2026-01-01/.get-2.parquet":   file(1),
		"speed/resources/date=2026-01-01/notes.txt":        file(1),
		"speed/resources/date=2026-01-01/dir.parquet/x":    file(1),
		"speed/resources/date=2026-01-01/link.parquet":     {Mode: fs.ModeSymlink, Data: []byte("/etc/passwd")},
		"speed/resources/date=x/t-0-0-4.parquet":           file(1),
		"speed/resources/t-0-0-4.parquet":                  file(1),
		"speed/Resources/date=2026-01-01/t-0-0-4.parquet":  file(1),
		"batch/20260101T000000Z-a/patients/data_0.parquet": file(1),
		"_manifest/batch.json":                             file(1),
	}
	files, err := ListSpeed(fsys)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, f.Key)
		if f.Modified != at || f.Size == 0 {
			t.Errorf("%s: size %d, modified %v", f.Key, f.Size, f.Modified)
		}
	}
	want := []string{
		"speed/patient/date=2026-01-01/t-0-0-4.parquet",
		"speed/resources/date=2026-01-01/t-0-0-4.parquet",
		"speed/resources/date=2026-01-02/t-0-5-9.parquet",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if p := files[0].Path("/lake/acme"); p != filepath.FromSlash("/lake/acme/"+want[0]) {
		t.Errorf("Path: got %s", p)
	}
	if files, err := ListSpeed(fstest.MapFS{}); files != nil || err != nil {
		t.Errorf("an empty lake: got %v %v", files, err)
	}
}
