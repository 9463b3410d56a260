// Package sink turns Arrow record batches into Parquet files and makes them
// durable in the store of the tenant they belong to.
package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Store is one tenant's object store. Keys are slash-separated paths
// relative to the tenant's root.
type Store interface {
	// Put makes the file at localPath durable under key: when Put returns
	// nil, the object survives a crash of this process.
	Put(ctx context.Context, key, localPath string) error
	// Get copies the object at key into w.
	Get(ctx context.Context, key string, w io.Writer) error
	// List returns the objects whose keys start with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Delete removes the object at key; a missing object is not an error.
	Delete(ctx context.Context, key string) error
	// URL is where the store lives: a directory path or s3://bucket/prefix.
	URL() string

	// Conditional reads and writes of small objects (conditional.go), for a
	// document that two processes may race to change, such as the compactor's
	// lease. A tag identifies the object's content as last written (an S3 ETag).

	// GetTagged copies the object at key into w and returns its tag; a missing
	// object is an error wrapping fs.ErrNotExist.
	GetTagged(ctx context.Context, key string, w io.Writer) (tag string, err error)
	// PutIfAbsent stores body under key only if no object is there, and returns
	// the new object's tag; ErrPreconditionFailed if one is.
	PutIfAbsent(ctx context.Context, key string, body []byte) (tag string, err error)
	// PutIfMatch replaces the object at key by body only if its tag is still tag,
	// and returns the new tag; ErrPreconditionFailed if it changed or is gone.
	PutIfMatch(ctx context.Context, key string, body []byte, tag string) (newTag string, err error)
	// DeleteIfMatch removes the object at key only if its tag is still tag;
	// ErrPreconditionFailed if it changed. A missing object is not an error.
	DeleteIfMatch(ctx context.Context, key, tag string) error
}

// Object is one stored file.
type Object struct {
	Key      string
	Size     int64
	Modified time.Time
}

// ErrAccessDenied marks a store's refusal of the tenant's credentials for
// the operation. It never clears by retrying the same call elsewhere.
var ErrAccessDenied = errors.New("access denied")

// ErrUntrusted marks a store endpoint whose TLS certificate the client does
// not trust (unknown authority, wrong host name, expired): store.ca_file or
// the endpoint's certificate needs fixing; retrying the same call cannot.
var ErrUntrusted = errors.New("store certificate not trusted")

// Local is a store in a local directory. Put copies the file next to its
// final name, fsyncs it, renames it into place and fsyncs the directory.
type Local struct {
	Root string
}

// NewLocal returns a local store rooted at dir, creating it.
func NewLocal(dir string) (*Local, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local store %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("local store %s: %w", dir, err)
	}
	return &Local{Root: abs}, nil
}

func (l *Local) URL() string { return l.Root }

func (l *Local) path(key string) (string, error) {
	clean := path.Clean("/" + key)
	if clean == "/" || clean != "/"+key {
		return "", fmt.Errorf("key %q is not a clean relative path", key)
	}
	return filepath.Join(l.Root, filepath.FromSlash(key)), nil
}

func (l *Local) Put(ctx context.Context, key, localPath string) error {
	dst, err := l.path(key)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	src, err := os.Open(localPath)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	defer src.Close()
	return install(key, dst, src)
}

// install writes src next to dst, fsyncs it, renames it into place and fsyncs the
// directory, which exists.
func install(key, dst string, src io.Reader) error {
	dir := filepath.Dir(dst)
	tmp, err := os.CreateTemp(dir, ".put-*")
	if err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, src); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("put %s: fsync: %w", key, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	ok = true
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

func (l *Local) Get(ctx context.Context, key string, w io.Writer) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("get %s: %w", key, err)
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

func (l *Local) List(ctx context.Context, prefix string) ([]Object, error) {
	var out []Object
	err := filepath.WalkDir(l.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		rel, err := filepath.Rel(l.Root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, Object{Key: key, Size: info.Size(), Modified: info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (l *Local) Delete(ctx context.Context, key string) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}
