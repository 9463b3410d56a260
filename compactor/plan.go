package compactor

import (
	"sort"
	"time"

	"fhirlake/lake"
	"fhirlake/sink"
)

// PlanOptions tune which speed files a run reads.
type PlanOptions struct {
	// Overlap re-reads the files modified up to this long before the previous
	// watermark: an object is dated by when its upload began, so a slow upload can
	// land behind the watermark. Re-reading a file is harmless.
	Overlap time.Duration
	// ConsistencyDelay leaves the files modified less than this long ago for the next
	// run, so that a flush still uploading its files is read whole.
	ConsistencyDelay time.Duration
	// FullRefresh rebuilds from every speed file, ignoring the previous snapshot.
	FullRefresh bool
	// Project fingerprints the dbt project of this run; a snapshot built by another
	// project is not reused, unless speed files have been expired since (then the
	// speed layer alone cannot rebuild it).
	Project string
}

// Selection is what one run of one tenant reads.
type Selection struct {
	// Files are the speed files to read, sorted by key.
	Files []lake.SpeedFile
	// Datasets are the datasets of Files, sorted.
	Datasets []string
	// Partitions are the date partitions of Files (YYYY-MM-DD, sorted) by dataset: the
	// only directories the run lists and opens.
	Partitions map[string][]string
	// Watermark is the newest of Files (by modification time, then key), or the
	// previous watermark when Files is empty. The run publishes it.
	Watermark lake.Watermark
	// Previous is the snapshot to build on; nil for a full refresh.
	Previous *lake.Manifest
	// FullRefresh is set when the run rebuilds from the speed layer alone, and Reason
	// says why: no snapshot yet, asked for, or the dbt project changed (Reason is also
	// set when a changed project cannot rebuild because speed files were expired).
	FullRefresh bool
	Reason      string
	// Fresh counts the files newer than the previous watermark: without any, an
	// incremental run has nothing to add and is skipped.
	Fresh int
	// Deferred counts the files left for a later run by the consistency delay.
	Deferred int
}

// UpToDate reports that the previous snapshot already holds everything there is.
func (s Selection) UpToDate() bool {
	return !s.FullRefresh && s.Fresh == 0
}

// Plan decides which of the listed objects a run reads, given the tenant's current
// manifest (nil when none was published) and the time now. It is pure: the listing is
// any order, objects outside the speed layout are ignored.
//
// An incremental run reads the files modified at or after the previous watermark minus
// the overlap; a full refresh reads every file. Both leave out the files modified after
// now minus the consistency delay.
func Plan(listing []sink.Object, prev *lake.Manifest, now time.Time, o PlanOptions) Selection {
	sel := Selection{Previous: prev}
	switch {
	case prev == nil:
		sel.FullRefresh, sel.Reason = true, "no snapshot yet"
	case o.FullRefresh:
		sel.FullRefresh, sel.Reason = true, "full refresh requested"
	case o.Project != "" && prev.Project != o.Project && prev.SpeedExpiredBefore.IsZero():
		sel.FullRefresh, sel.Reason = true, "the dbt project changed"
	case o.Project != "" && prev.Project != o.Project:
		// The speed layer no longer holds everything: rebuilding from it would lose
		// what was expired, so the new project builds on the previous state.
		sel.Reason = "the dbt project changed; the previous state is carried over, the speed layer having been expired"
	}
	if sel.FullRefresh {
		sel.Previous = nil
	}
	var cutoff time.Time
	if sel.Previous != nil {
		sel.Watermark = prev.Watermark
		cutoff = prev.TailStart(o.Overlap)
	}
	settled := now.Add(-o.ConsistencyDelay)
	partitions := map[string]map[string]bool{}
	for _, obj := range listing {
		f, ok := lake.ParseSpeedKey(obj.Key)
		if !ok {
			continue
		}
		f.Size, f.Modified = obj.Size, obj.Modified
		if f.Modified.After(settled) {
			sel.Deferred++
			continue
		}
		if sel.Previous != nil && f.Modified.Before(cutoff) {
			continue
		}
		if sel.Previous == nil || prev.Watermark.Before(f) {
			sel.Fresh++
		}
		sel.Files = append(sel.Files, f)
		if partitions[f.Dataset] == nil {
			partitions[f.Dataset] = map[string]bool{}
		}
		partitions[f.Dataset][f.Date] = true
		if sel.Watermark.Before(f) {
			sel.Watermark = lake.Watermark{Modified: f.Modified, Key: f.Key}
		}
	}
	sort.Slice(sel.Files, func(i, j int) bool { return sel.Files[i].Key < sel.Files[j].Key })
	sel.Partitions = make(map[string][]string, len(partitions))
	for d, dates := range partitions {
		sel.Datasets = append(sel.Datasets, d)
		for date := range dates {
			sel.Partitions[d] = append(sel.Partitions[d], date)
		}
		sort.Strings(sel.Partitions[d])
	}
	sort.Strings(sel.Datasets)
	return sel
}
