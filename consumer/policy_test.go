package consumer

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

const testMaxAge = 5 * time.Second

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// testPolicy is partition 0's policy (no phase) with small size limits.
func testPolicy() flushPolicy {
	return newFlushPolicy(&Options{MaxRows: 100, MaxBytes: 1000, MaxAge: testMaxAge}, 0)
}

// peersAnswer returns a peersCatchingUp that answers catching and counts
// how often it was asked.
func peersAnswer(catching bool, asked *int) func() bool {
	return func() bool { *asked++; return catching }
}

func TestAgePhase(t *testing.T) {
	phases := map[time.Duration]bool{}
	for p := int32(0); p < 16; p++ {
		ph := agePhase(testMaxAge, p)
		if ph < 0 || ph >= testMaxAge/MinAgeFraction {
			t.Errorf("partition %d: got phase %v, want within [0, %v)", p, ph, testMaxAge/MinAgeFraction)
		}
		phases[ph] = true
	}
	if len(phases) < 4 {
		t.Errorf("got %d distinct phases for 16 partitions, want at least 4: their flushes would coincide", len(phases))
	}
}

func TestFlushDeadline(t *testing.T) {
	for p := int32(0); p < 16; p++ {
		pol := newFlushPolicy(&Options{MaxAge: testMaxAge}, p)
		phase := agePhase(testMaxAge, p)
		for _, tc := range []struct {
			name     string
			produced time.Time
			want     time.Time
			held     bool
		}{
			{"live record: MaxAge after it was produced", t0, t0.Add(testMaxAge - phase), false},
			{"produced 2s ago: the remaining age", t0.Add(-2 * time.Second), t0.Add(testMaxAge - 2*time.Second - phase), false},
			{"backlog: held 2/5 of MaxAge so files are not tiny", t0.Add(-time.Hour), t0.Add(testMaxAge * 2 / 5), true},
			{"produced 3/4 of MaxAge ago: held too", t0.Add(-testMaxAge * 3 / 4), t0.Add(testMaxAge * 2 / 5), true},
			{"producer clock ahead: at most MaxAge from now", t0.Add(time.Hour), t0.Add(testMaxAge - phase), false},
			{"no timestamp", time.Time{}, t0.Add(testMaxAge - phase), false},
		} {
			t.Run(fmt.Sprintf("partition %d/%s", p, tc.name), func(t *testing.T) {
				got, held := pol.deadline(t0, tc.produced)
				if !got.Equal(tc.want) || held != tc.held {
					t.Errorf("got deadline now+%v (held %v), want now+%v (held %v)", got.Sub(t0), held, tc.want.Sub(t0), tc.held)
				}
			})
		}
	}
}

// TestFlushPolicyOpen: opening a buffer starts its age clock and says
// whether it is backlogged; it does nothing to a buffer already open.
func TestFlushPolicyOpen(t *testing.T) {
	for _, tc := range []struct {
		name           string
		produced       time.Time
		wantUntil      time.Duration
		wantBacklogged bool
	}{
		{"fresh record", t0, testMaxAge, false},
		{"produced less than MaxAge/2 ago", t0.Add(-testMaxAge / 2), testMaxAge / 2, false},
		{"stale: produced more than MaxAge/2 ago", t0.Add(-testMaxAge/2 - time.Millisecond), testMaxAge/2 - time.Millisecond, true},
		{"held for the backlog hold", t0.Add(-time.Hour), testMaxAge * 2 / 5, true},
		{"no timestamp", time.Time{}, testMaxAge, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy()
			if !p.empty() {
				t.Fatal("got a new policy holding records, want it empty")
			}
			p.open(t0, tc.produced)
			until, ok := p.untilNext(t0)
			if !ok || until != tc.wantUntil {
				t.Errorf("got untilNext %v (ok %v), want %v", until, ok, tc.wantUntil)
			}
			if p.backlogged != tc.wantBacklogged {
				t.Errorf("got backlogged %v, want %v", p.backlogged, tc.wantBacklogged)
			}
			p.open(t0.Add(time.Second), t0.Add(-time.Hour))
			if until2, _ := p.untilNext(t0); until2 != until || p.backlogged != tc.wantBacklogged {
				t.Errorf("opened again: got untilNext %v, backlogged %v; want them unchanged (%v, %v)", until2, p.backlogged, until, tc.wantBacklogged)
			}
		})
	}
}

// TestFlushPolicySize: a buffer reaching MaxRows or MaxBytes is flushed at
// once, alone, whatever else holds.
func TestFlushPolicySize(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    held
		want flushReason
	}{
		{"below both limits", held{rows: 99, bytes: 999}, ""},
		{"MaxRows", held{rows: 100, bytes: 10}, reasonRows},
		{"MaxBytes", held{rows: 10, bytes: 1000}, reasonBytes},
		{"both: rows first", held{rows: 200, bytes: 2000}, reasonRows},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy()
			p.open(t0, t0)
			asked := 0
			if got := p.add(t0, tc.h, true, peersAnswer(true, &asked)); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if got := tc.want.takesAlongDue(); tc.want != "" && got {
				t.Errorf("a flush by %s takes along the partitions due: got %v, want false", tc.want, got)
			}
		})
	}
	t.Run("size beats the end of a backlog, without asking peers", func(t *testing.T) {
		p := testPolicy()
		p.open(t0, t0.Add(-time.Hour))
		asked := 0
		p.add(t0, held{rows: 1}, false, peersAnswer(true, &asked))
		if got := p.add(t0, held{rows: 100}, true, peersAnswer(true, &asked)); got != reasonRows || asked != 0 || p.waiting() {
			t.Errorf("got %q, peers asked %d times, waiting %v; want %q, not asked, not waiting", got, asked, p.waiting(), reasonRows)
		}
	})
}

// TestFlushPolicyAge: a buffer is flushed when it is due, and only then.
func TestFlushPolicyAge(t *testing.T) {
	p := testPolicy()
	asked := 0
	peers := peersAnswer(false, &asked)
	if _, ok := p.untilNext(t0); ok {
		t.Error("empty buffer: got a next decision, want none (no timer)")
	}
	if got := p.tick(t0, peers); got != "" {
		t.Errorf("empty buffer: got %q on tick, want nothing", got)
	}
	p.open(t0, t0)
	for _, tc := range []struct {
		name string
		at   time.Duration
		want flushReason
	}{
		{"just opened", 0, ""},
		{"a little before MaxAge", testMaxAge - time.Millisecond, ""},
		{"at MaxAge", testMaxAge, reasonAge},
		{"timer late", testMaxAge + time.Second, reasonAge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := p
			if got := q.add(t0.Add(tc.at), held{rows: 1}, true, peers); got != "" {
				t.Errorf("delivery: got %q, want nothing (age is the timer's)", got)
			}
			if got := q.tick(t0.Add(tc.at), peers); got != tc.want {
				t.Errorf("tick: got %q, want %q", got, tc.want)
			}
		})
	}
	if asked != 0 {
		t.Errorf("peers asked %d times, want never outside the end of a backlog", asked)
	}
	if !reasonAge.takesAlongDue() {
		t.Error("a flush by age: got alone, want it to take along the partitions due")
	}
}

// TestFlushPolicyBacklog: a backlogged buffer is flushed when its partition
// reaches the high watermark after a backlog, and in no other case.
func TestFlushPolicyBacklog(t *testing.T) {
	type step struct {
		caughtUp bool
		want     flushReason
	}
	fresh, old, stale := t0, t0.Add(-time.Hour), t0.Add(-testMaxAge*11/20)
	for _, tc := range []struct {
		name     string
		produced time.Time
		steps    []step
	}{
		{"end of a backlog", old, []step{{false, ""}, {false, ""}, {true, reasonCaughtUp}}},
		{"steady state: every fetch reaches the high watermark", fresh, []step{{true, ""}, {true, ""}, {true, ""}}},
		{"producer clock behind, every fetch caught up: no tiny files", old, []step{{true, ""}, {true, ""}, {true, ""}}},
		{"a fetch capped under load, records fresh", fresh, []step{{false, ""}, {true, ""}}},
		{"end of a backlog of records not held (due in 9/20 of MaxAge), older than MaxAge/2", stale, []step{{false, ""}, {true, reasonCaughtUp}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := testPolicy()
			p.open(t0, tc.produced)
			asked := 0
			for i, s := range tc.steps {
				if got := p.add(t0, held{rows: 1}, s.caughtUp, peersAnswer(false, &asked)); got != s.want {
					t.Errorf("delivery %d (caught up %v): got %q, want %q", i, s.caughtUp, got, s.want)
				}
			}
		})
	}
	t.Run("behind again after catching up, in the next buffer", func(t *testing.T) {
		p := testPolicy()
		asked := 0
		peers := peersAnswer(false, &asked)
		p.open(t0, old)
		p.add(t0, held{rows: 1}, false, peers)
		if got := p.add(t0, held{rows: 1}, true, peers); got != reasonCaughtUp {
			t.Fatalf("first backlog's end: got %q, want %q", got, reasonCaughtUp)
		}
		p.flushed()
		p.open(t0, old)
		if got := p.add(t0, held{rows: 1}, true, peers); got != "" {
			t.Errorf("caught up twice in a row: got %q, want nothing", got)
		}
		p.add(t0, held{rows: 1}, false, peers)
		if got := p.add(t0, held{rows: 1}, true, peers); got != reasonCaughtUp {
			t.Errorf("second backlog's end: got %q, want %q", got, reasonCaughtUp)
		}
	})
	t.Run("behind outlives a flush", func(t *testing.T) {
		p := testPolicy()
		asked := 0
		peers := peersAnswer(false, &asked)
		p.open(t0, fresh)
		p.add(t0, held{rows: 1}, false, peers)
		p.flushed()
		p.open(t0, old)
		if got := p.add(t0, held{rows: 1}, true, peers); got != reasonCaughtUp {
			t.Errorf("first delivery of a new backlogged buffer after one behind: got %q, want %q", got, reasonCaughtUp)
		}
	})
	t.Run("catching up is published while backlogged and behind", func(t *testing.T) {
		p := testPolicy()
		asked := 0
		peers := peersAnswer(false, &asked)
		p.open(t0, old)
		for i, s := range []struct {
			caughtUp bool
			want     bool
		}{{true, false}, {false, true}, {false, true}, {true, false}} {
			p.add(t0, held{rows: 1}, s.caughtUp, peers)
			if got := p.catchingUp(); got != s.want {
				t.Errorf("after delivery %d (caught up %v): got catchingUp %v, want %v", i, s.caughtUp, got, s.want)
			}
		}
		p.add(t0, held{rows: 1}, false, peers)
		p.flushed()
		if p.catchingUp() {
			t.Error("after a flush: got catchingUp, want not (no backlogged buffer)")
		}
	})
	if !reasonCaughtUp.takesAlongDue() {
		t.Error("a flush at the end of a backlog: got alone, want it to take along the partitions due")
	}
}

// TestFlushPolicyWaitsForPeers: at the end of its backlog a buffer waits
// while other partitions are still catching up, looking again every
// recheckEvery; it is flushed once they have caught up, or by age first.
func TestFlushPolicyWaitsForPeers(t *testing.T) {
	// endOfBacklog returns a policy whose buffer, held for the minimum
	// hold (due at t0+2/5 of MaxAge), has just reached the end of its backlog
	// while peers were still catching up.
	endOfBacklog := func(t *testing.T) flushPolicy {
		t.Helper()
		p := testPolicy()
		asked := 0
		p.open(t0, t0.Add(-time.Hour))
		p.add(t0, held{rows: 1}, false, peersAnswer(true, &asked))
		if got := p.add(t0, held{rows: 1}, true, peersAnswer(true, &asked)); got != "" || asked != 1 {
			t.Fatalf("end of the backlog with peers catching up: got %q, peers asked %d times; want nothing, asked once", got, asked)
		}
		if !p.waiting() {
			t.Fatal("got not waiting, want waiting for the peers")
		}
		return p
	}
	t.Run("looks again after recheckEvery", func(t *testing.T) {
		p := endOfBacklog(t)
		if got, ok := p.untilNext(t0); !ok || got != recheckEvery {
			t.Errorf("got untilNext %v (ok %v), want %v", got, ok, recheckEvery)
		}
		asked := 0
		if got := p.tick(t0.Add(recheckEvery-time.Millisecond), peersAnswer(false, &asked)); got != "" || asked != 0 {
			t.Errorf("tick before the recheck: got %q, peers asked %d times; want nothing, not asked", got, asked)
		}
	})
	t.Run("peers still catching up: looks again later", func(t *testing.T) {
		p := endOfBacklog(t)
		asked := 0
		now := t0.Add(recheckEvery)
		if got := p.tick(now, peersAnswer(true, &asked)); got != "" || asked != 1 {
			t.Errorf("got %q, peers asked %d times; want nothing, asked once", got, asked)
		}
		if got, _ := p.untilNext(now); got != recheckEvery {
			t.Errorf("got untilNext %v, want %v", got, recheckEvery)
		}
	})
	t.Run("peers caught up: flushed", func(t *testing.T) {
		p := endOfBacklog(t)
		asked := 0
		if got := p.tick(t0.Add(recheckEvery), peersAnswer(false, &asked)); got != reasonCaughtUp {
			t.Errorf("got %q, want %q", got, reasonCaughtUp)
		}
	})
	t.Run("due before the peers catch up: flushed by age", func(t *testing.T) {
		p := endOfBacklog(t)
		asked := 0
		due := t0.Add(backlogHold(testMaxAge))
		now := due.Add(-recheckEvery / 2)
		for p.tick(now, peersAnswer(true, &asked)) == "" {
			next, _ := p.untilNext(now)
			if now = now.Add(next); now.After(due) {
				t.Fatalf("got no flush by %v, want one at the deadline %v", now.Sub(t0), due.Sub(t0))
			}
		}
		if got, _ := p.untilNext(due.Add(-time.Millisecond)); got > time.Millisecond {
			t.Errorf("got untilNext %v a millisecond before the deadline, want the deadline", got)
		}
		if got := p.tick(due, peersAnswer(true, &asked)); got != reasonAge {
			t.Errorf("at the deadline: got %q, want %q", got, reasonAge)
		}
	})
	t.Run("a new delivery does not stop the wait", func(t *testing.T) {
		p := endOfBacklog(t)
		asked := 0
		if got := p.add(t0.Add(time.Millisecond), held{rows: 2}, true, peersAnswer(false, &asked)); got != "" || !p.waiting() || asked != 0 {
			t.Errorf("got %q, waiting %v, peers asked %d times; want nothing, still waiting, not asked", got, p.waiting(), asked)
		}
	})
	t.Run("a flush ends the wait", func(t *testing.T) {
		p := endOfBacklog(t)
		p.flushed()
		if p.waiting() || !p.empty() {
			t.Errorf("got waiting %v, empty %v; want not waiting, empty", p.waiting(), p.empty())
		}
		if _, ok := p.untilNext(t0); ok {
			t.Error("got a next decision, want none")
		}
	})
}

func TestFlushReasonTakesAlongDue(t *testing.T) {
	for _, tc := range []struct {
		reason flushReason
		want   bool
	}{
		{reasonRows, false}, {reasonBytes, false}, {reasonAge, true}, {reasonCaughtUp, true},
		{reasonMemory, false}, {reasonRevoke, false}, {reasonShutdown, false},
	} {
		t.Run(string(tc.reason), func(t *testing.T) {
			if got := tc.reason.takesAlongDue(); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestJoinsDue: a flush by age or at the end of a backlog takes along every
// partition holding records, not stuck, and due within MaxAge/5 or waiting
// for the end of the backlog.
func TestJoinsDue(t *testing.T) {
	horizon := t0.Add(testMaxAge / MinAgeFraction)
	for _, tc := range []struct {
		name string
		p    peer
		want bool
	}{
		{"due within MaxAge/5", peer{filling: 10, due: horizon.Add(-time.Millisecond)}, true},
		{"due at MaxAge/5", peer{filling: 10, due: horizon}, true},
		{"already overdue", peer{filling: 10, due: t0.Add(-time.Second)}, true},
		{"due later", peer{filling: 10, due: horizon.Add(time.Millisecond)}, false},
		{"due later but waiting for the end of the backlog", peer{filling: 10, due: horizon.Add(time.Hour), waiting: true}, true},
		{"empty", peer{}, false},
		{"holding nothing", peer{due: horizon}, false},
		{"stuck", peer{filling: 10, due: horizon, stuck: true}, false},
		{"stuck and waiting", peer{filling: 10, due: horizon, waiting: true, stuck: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := joinsDue(t0, testMaxAge, tc.p); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestMemoryFlush: a memory event asks the partitions holding the most,
// largest first, until they cover the need, and at least two; never an
// empty or stuck one.
func TestMemoryFlush(t *testing.T) {
	for _, tc := range []struct {
		name    string
		need    int64
		filling []int64
		stuck   []int // indices of stuck partitions
		refuse  []int // indices already signalled (not counted)
		want    []int // indices asked, in order
	}{
		{"enough being flushed already", 0, []int64{10, 20}, nil, nil, nil},
		{"largest first until the need is covered", 25, []int64{5, 20, 10, 1}, nil, nil, []int{1, 2}},
		{"a second one even when the largest covers the need", 10, []int64{5, 20, 1}, nil, nil, []int{1, 0}},
		{"all when the need is large", 1000, []int64{5, 20, 1}, nil, nil, []int{1, 0, 2}},
		{"never an empty one", 1000, []int64{0, 20, 0}, nil, nil, []int{1}},
		{"never a stuck one", 25, []int64{5, 20, 10}, []int{1}, nil, []int{2, 0}},
		{"one already signalled is not counted", 10, []int64{5, 20, 1}, nil, []int{0}, []int{1, 0, 2}},
		{"none", 10, nil, nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peers := make([]peer, len(tc.filling))
			for i, f := range tc.filling {
				peers[i] = peer{filling: f, stuck: slices.Contains(tc.stuck, i)}
			}
			var got []int
			memoryFlush(tc.need, peers, func(i int) bool {
				got = append(got, i)
				return !slices.Contains(tc.refuse, i)
			})
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v asked, want %v", got, tc.want)
			}
		})
	}
}
