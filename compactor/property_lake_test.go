package compactor

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"fhirlake/lake"
	"fhirlake/query/querytest"
)

// TestIncrementalMatchesFullRefresh is a property test of the batch layer: after a
// random sequence of deliveries — new versions, deletes with and without a versionId,
// resources of a server that does not version them, replays of earlier ranges and older
// versions arriving late — compacted after each delivery, a full refresh from the speed
// layer publishes the same marts and states as the incremental runs, each read as a
// reader reads it. The runs merge on read: some write only a delta of the states and
// of the resource marts beside the bases they carry, and the changes passing
// compact.rebase_share make a later one rebuild the base, so the sequence crosses a
// rebase. Each seed is one sequence; a failure names it.
func TestIncrementalMatchesFullRefresh(t *testing.T) {
	t.Parallel() // see needDBTRunner
	runner := needDBTRunner(t)
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			ctx := context.Background()
			ten, store := newTenant(t, "acme")
			c := newTestCompactor(t, runner, nil, func(o *Options) {
				o.Overlap = 0
				o.Timeout = 10 * time.Minute
				// An observation may arrive before its patient.
				o.Vars = map[string]string{"relationship_severity": "warn"}
				// About 25 resources, 10 changed per delivery: deltas on deltas, then a rebase.
				o.RebaseShare = 1.5
			})
			g := newHistory(seed)
			var last *Result
			var modes []string
			for step := range 5 {
				querytest.WriteChanges(t, store.Root, "acme", g.delivery())
				res, err := c.Compact(ctx, ten)
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				mode := "rebuild"
				if res.Models[lake.StateModel(lake.RawDataset)].Merged() {
					mode = "delta"
				}
				// The resource and aggregate marts merge on read with the state.
				for _, mart := range []string{"patients", "observations", "patient_latest_vitals", "encounter_summary"} {
					if got := res.Models[mart].Merged(); got != (mode == "delta") {
						t.Errorf("step %d, a %s run: mart %s merged on read: %v", step, mode, mart, got)
					}
				}
				modes = append(modes, mode)
				last = res
			}
			t.Logf("runs: %s", strings.Join(modes, ","))
			// The aggregate marts hold what the test is about: vitals of patients,
			// encounters with observations and their patient's gender.
			for model, where := range map[string]string{
				"patient_latest_vitals": "heart_rate IS NOT NULL AND gender IS NOT NULL",
				"encounter_summary":     "observation_count > 0 AND patient_gender IS NOT NULL",
			} {
				if n := countRows(t, store.Root, last.SnapshotID, model, where); n == 0 {
					t.Errorf("%s: no row where %s", model, where)
				}
			}
			if got := strings.Join(modes, ","); !strings.Contains(got, "delta,delta") || !strings.Contains(got, "delta,rebuild") {
				t.Errorf("runs: %s, want deltas on a delta, and a rebuild after them", got)
			}
			c.opts.FullRefresh = true
			full, err := c.Compact(ctx, ten)
			if err != nil {
				t.Fatal(err)
			}
			if len(full.Models) == 0 {
				t.Fatal("the full refresh published no model")
			}
			for model := range full.Models {
				if d := diffParquet(t, store.Root, last.SnapshotID, full.SnapshotID, model); d != 0 {
					t.Errorf("%s: %d rows differ between the incremental runs and the full refresh", model, d)
				}
			}
		})
	}
}

// history generates deliveries of a small population's changes.
type history struct {
	rnd    *rand.Rand
	offset int64
	clock  time.Time
	// version is each resource's newest version number so far (0: never written);
	// sent holds every change delivered, for replays and late arrivals.
	version map[string]int
	sent    []querytest.Change
}

func newHistory(seed uint64) *history {
	return &history{rnd: rand.New(rand.NewPCG(seed, seed)), clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), version: map[string]int{}}
}

// resource is the i-th resource: patients, encounters of them and observations of
// them, each version drawn anew, so that a patient's gender changes and an
// observation moves between patients and between encounters (or leaves them).
func (h *history) resource(i int) (typ, id, fields string) {
	patient := func() string { return fmt.Sprintf("p%d", 5*h.rnd.IntN(12)) }
	switch i % 5 {
	case 0:
		return "Patient", fmt.Sprintf("p%d", i), fmt.Sprintf(`"gender":%q,"birthDate":"19%02d-01-01"`, []string{"female", "male"}[h.rnd.IntN(2)], 40+h.rnd.IntN(50))
	case 1:
		return "Encounter", fmt.Sprintf("e%d", i), fmt.Sprintf(`"status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/%s"},"period":{"start":"2025-0%d-01T10:00:00Z"}`, patient(), 1+h.rnd.IntN(9))
	}
	encounter := ""
	if n := h.rnd.IntN(13); n < 12 {
		encounter = fmt.Sprintf(`,"encounter":{"reference":"Encounter/e%d"}`, 5*n+1)
	}
	code := []string{"8867-4", "29463-7"}[h.rnd.IntN(2)]
	return "Observation", fmt.Sprintf("o%d", i), fmt.Sprintf(`"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],"code":{"coding":[{"system":"http://loinc.org","code":%q}]},"subject":{"reference":"Patient/%s"}%s,"effectiveDateTime":"2025-0%d-01T10:00:00Z","valueQuantity":{"value":%d}`,
		code, patient(), encounter, 1+h.rnd.IntN(9), h.rnd.IntN(100))
}

// delivery is one flush's changes: mostly new versions, some deletes, a replay of a
// few earlier changes (same coordinates) and a few older versions arriving late (new
// coordinates). Resources 48 and up belong to a server without versionIds.
func (h *history) delivery() []querytest.Change {
	var out []querytest.Change
	next := func(c querytest.Change) {
		c.Offset = h.offset
		h.offset++
		out = append(out, c)
		h.sent = append(h.sent, c)
	}
	for range 12 {
		i := h.rnd.IntN(60)
		typ, id, fields := h.resource(i)
		if typ == "Encounter" && h.version[id] > 0 && h.rnd.IntN(4) > 0 {
			// Encounters change seldom, so that a change of their patient alone
			// must reach their rows of encounter_summary.
			continue
		}
		h.clock = h.clock.Add(time.Duration(1+h.rnd.IntN(60)) * time.Second)
		h.version[id]++
		v := fmt.Sprint(h.version[id])
		if i >= 48 {
			v = ""
		}
		c := querytest.Change{Type: typ, ID: id, Version: v, Updated: h.clock, Fields: fields}
		// Patients and encounters are not deleted: the marts' tests refuse an
		// observation of a deleted one, which is not what this test is about.
		switch r := h.rnd.IntN(10); {
		case typ != "Observation":
		case r == 0:
			c.Delete, c.Fields = true, ""
		case r == 1:
			// A delete notification without a versionId or lastUpdated.
			c.Delete, c.Fields, c.Version, c.NoUpdated = true, "", "", true
		}
		next(c)
	}
	if len(h.sent) > 20 {
		for range 3 {
			// An older version arrives late, with new coordinates.
			old := h.sent[h.rnd.IntN(len(h.sent)-12)]
			next(old)
		}
	}
	if len(h.sent) > 20 {
		// A replay: earlier changes delivered again with their coordinates.
		start := h.rnd.IntN(len(h.sent) - 20)
		out = append(out, h.sent[start:start+4]...)
	}
	return out
}

// countRows counts the rows of model in snapshot id where where holds.
func countRows(t *testing.T, root, id, model, where string) int {
	t.Helper()
	db, err := openDuckDB()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow("SELECT count(*) FROM " + modelSQL(t, root, snapshotManifest(t, root, id), model) + " WHERE " + where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
