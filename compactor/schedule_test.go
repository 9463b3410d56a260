package compactor

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestParseSchedule(t *testing.T) {
	s, err := ParseSchedule("0 2 * * *")
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 11, 25, 21, 0, 0, 0, time.Local)
	if got, want := s.Next(from), time.Date(2026, 11, 26, 2, 0, 0, 0, time.Local); !got.Equal(want) {
		t.Errorf("next: got %v, want %v", got, want)
	}
	if _, err := ParseSchedule("0 2 * *"); err == nil {
		t.Error("a four-field expression parsed")
	}
	if _, err := ParseSchedule("@daily"); err != nil {
		t.Errorf("@daily: %v", err)
	}
}

type everyTick time.Duration

func (e everyTick) Next(t time.Time) time.Time { return t.Add(time.Duration(e)) }

func TestRunScheduled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	runs := 0
	err := RunScheduled(ctx, everyTick(5*time.Millisecond), nil, func(ctx context.Context) {
		runs++
		if runs == 3 {
			cancel()
		}
	})
	if !errors.Is(err, context.Canceled) || runs != 3 {
		t.Errorf("got %d runs and %v, want 3 runs and the cancellation", runs, err)
	}
}
