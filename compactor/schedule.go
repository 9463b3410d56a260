package compactor

import (
	"context"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule yields the activation times of a recurring job.
type Schedule interface {
	// Next is the first activation after t.
	Next(t time.Time) time.Time
}

// ParseSchedule reads a cron expression of five fields (minute hour day-of-month month
// day-of-week), or a descriptor such as @daily or @every 6h, in local time.
func ParseSchedule(spec string) (Schedule, error) {
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", spec, err)
	}
	return s, nil
}

// RunScheduled calls run at every activation of s until ctx ends. Runs never overlap:
// an activation that passes while run is busy is skipped, and the next one is counted
// from when run returned. It returns ctx's error.
func RunScheduled(ctx context.Context, s Schedule, now func() time.Time, run func(context.Context)) error {
	if now == nil {
		now = time.Now
	}
	for {
		next := s.Next(now())
		if next.IsZero() {
			return fmt.Errorf("schedule has no next activation")
		}
		timer := time.NewTimer(next.Sub(now()))
		select {
		case <-ctx.Done():
			timer.Stop()
			return ctx.Err()
		case <-timer.C:
		}
		run(ctx)
	}
}
