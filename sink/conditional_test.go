package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"testing"
)

func TestLocalConditional(t *testing.T) {
	ctx := context.Background()
	s, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const key = "_lease/compactor.json"
	if _, err := s.GetTagged(ctx, key, &bytes.Buffer{}); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("get of a missing object: %v, want fs.ErrNotExist", err)
	}
	if _, err := s.PutIfMatch(ctx, key, []byte("x"), "sometag"); !errors.Is(err, ErrPreconditionFailed) {
		t.Errorf("if-match on a missing object: %v, want ErrPreconditionFailed", err)
	}
	first, err := s.PutIfAbsent(ctx, key, []byte("first"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutIfAbsent(ctx, key, []byte("second")); !errors.Is(err, ErrPreconditionFailed) {
		t.Errorf("second create: %v, want ErrPreconditionFailed", err)
	}
	var buf bytes.Buffer
	tag, err := s.GetTagged(ctx, key, &buf)
	if err != nil || tag != first || buf.String() != "first" {
		t.Fatalf("get: %q tag %q, %v; want \"first\" tag %q", buf.String(), tag, err, first)
	}
	second, err := s.PutIfMatch(ctx, key, []byte("second"), first)
	if err != nil || second == first {
		t.Fatalf("replace with the current tag: tag %q, %v", second, err)
	}
	if _, err := s.PutIfMatch(ctx, key, []byte("third"), first); !errors.Is(err, ErrPreconditionFailed) {
		t.Errorf("replace with a stale tag: %v, want ErrPreconditionFailed", err)
	}
	if err := s.DeleteIfMatch(ctx, key, first); !errors.Is(err, ErrPreconditionFailed) {
		t.Errorf("delete with a stale tag: %v, want ErrPreconditionFailed", err)
	}
	buf.Reset()
	if _, err := s.GetTagged(ctx, key, &buf); err != nil || buf.String() != "second" {
		t.Errorf("after refused writes: %q, %v; want \"second\"", buf.String(), err)
	}
	if objs, err := s.List(ctx, "_lease/"); err != nil || len(objs) != 1 || objs[0].Key != key {
		t.Errorf("list: %v, %v; want only %s (no lock file)", objs, err, key)
	}
	if err := s.DeleteIfMatch(ctx, key, second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetTagged(ctx, key, &buf); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after delete: %v, want fs.ErrNotExist", err)
	}
	if err := s.DeleteIfMatch(ctx, key, second); err != nil {
		t.Errorf("delete of a missing object: %v", err)
	}
	if err := s.DeleteIfMatch(ctx, "never/made", "x"); err != nil {
		t.Errorf("delete in a missing directory: %v", err)
	}
}

// TestLocalConditionalRace: writers racing on one tag, or to create one key, have
// exactly one winner each round.
func TestLocalConditionalRace(t *testing.T) {
	ctx := context.Background()
	s, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const writers, rounds = 8, 40
	race := func(t *testing.T, write func(w int) (string, error)) (winner string) {
		t.Helper()
		var wg sync.WaitGroup
		tags := make([]string, writers)
		errs := make([]error, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tags[w], errs[w] = write(w)
			}()
		}
		wg.Wait()
		won := 0
		for w := range writers {
			switch {
			case errs[w] == nil:
				won++
				winner = tags[w]
			case !errors.Is(errs[w], ErrPreconditionFailed):
				t.Fatalf("writer %d: %v", w, errs[w])
			}
		}
		if won != 1 {
			t.Fatalf("%d writers won, want 1", won)
		}
		return winner
	}
	for r := range rounds {
		key := fmt.Sprintf("race/%d.json", r)
		tag := race(t, func(w int) (string, error) { return s.PutIfAbsent(ctx, key, fmt.Appendf(nil, "create %d", w)) })
		race(t, func(w int) (string, error) { return s.PutIfMatch(ctx, key, fmt.Appendf(nil, "replace %d", w), tag) })
	}
}
