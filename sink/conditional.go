package sink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrPreconditionFailed is a conditional write or delete refused because the
// object was not as the caller expected: present for PutIfAbsent, changed or gone
// for PutIfMatch, changed for DeleteIfMatch.
var ErrPreconditionFailed = errors.New("precondition failed")

// A local store's conditional operations compare and swap under an exclusive
// flock on a lock file beside the object (.lock in its directory, which List
// leaves out), so that they exclude each other between processes on the host (and
// on a network file system whose flock is shared). The tag is a hash of the
// content; the swap itself is Put's rename.

// localLockName is the lock file of a directory's conditional operations.
const localLockName = ".lock"

func (l *Local) GetTagged(ctx context.Context, key string, w io.Writer) (string, error) {
	p, err := l.path(key)
	if err != nil {
		return "", err
	}
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("get %s: %w", key, err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), f); err != nil {
		return "", fmt.Errorf("get %s: %w", key, err)
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), nil
}

func (l *Local) PutIfAbsent(ctx context.Context, key string, body []byte) (string, error) {
	return l.putIf(ctx, key, body, func(_ string, exists bool) bool { return !exists })
}

func (l *Local) PutIfMatch(ctx context.Context, key string, body []byte, tag string) (string, error) {
	return l.putIf(ctx, key, body, func(cur string, exists bool) bool { return exists && cur == tag })
}

func (l *Local) DeleteIfMatch(ctx context.Context, key, tag string) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	unlock, err := lockDir(filepath.Dir(p), false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	defer unlock()
	cur, err := l.GetTagged(ctx, key, io.Discard)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("delete %s: %w", key, err)
	case cur != tag:
		return fmt.Errorf("delete %s: %w", key, ErrPreconditionFailed)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

// putIf stores body under key if ok says so of the object there now (its tag, and
// whether it exists), deciding and replacing under the directory's lock.
func (l *Local) putIf(ctx context.Context, key string, body []byte, ok func(tag string, exists bool) bool) (string, error) {
	dst, err := l.path(key)
	if err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	unlock, err := lockDir(filepath.Dir(dst), true)
	if err != nil {
		return "", fmt.Errorf("put %s: %w", key, err)
	}
	defer unlock()
	cur, err := l.GetTagged(ctx, key, io.Discard)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("put %s: %w", key, err)
	}
	if !ok(cur, exists) {
		return "", fmt.Errorf("put %s: %w", key, ErrPreconditionFailed)
	}
	if err := install(key, dst, bytes.NewReader(body)); err != nil {
		return "", err
	}
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:16]), nil
}

// lockDir takes the exclusive lock of dir's conditional operations, creating dir
// first when create is set, and returns its release.
func lockDir(dir string, create bool) (unlock func(), err error) {
	if create {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, localLockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	// Closing the file releases the lock.
	return func() { f.Close() }, nil
}
