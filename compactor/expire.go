package compactor

import (
	"sort"
	"time"

	"fhirlake/lake"
	"fhirlake/sink"
)

// ExpireOptions bound what a tenant's store keeps after a publication.
type ExpireOptions struct {
	// SpeedRetention keeps the speed files modified after the watermark minus this;
	// 0 keeps every speed file.
	SpeedRetention time.Duration
	// KeepSnapshots is how many published snapshots stay, the current one included.
	KeepSnapshots int
	// OrphanGrace protects a snapshot that was never published (a run that died or
	// failed during its upload) until it is this old: a younger one may be a run in
	// progress.
	OrphanGrace time.Duration
}

// Expired returns the keys that the published manifest m makes obsolete, sorted:
// speed files older than its watermark minus the retention, of the datasets whose
// state m holds (the rows of any other dataset live in its speed files alone); the files of the published
// snapshots (m.History) beyond the KeepSnapshots newest; and the files of a snapshot
// that was never published, once it is older than the orphan grace. Keys it cannot
// place are never returned, nor any file that m or the kept snapshots' manifests
// (kept, read by the caller: KeptSnapshots) reference, such as a base carried from an
// earlier snapshot.
func Expired(listing []sink.Object, m *lake.Manifest, kept []*lake.Manifest, now time.Time, o ExpireOptions) []string {
	keep := map[string]bool{m.SnapshotID: true}
	referenced := map[string]bool{}
	for _, km := range append([]*lake.Manifest{m}, kept...) {
		for _, k := range km.Keys() {
			referenced[k] = true
		}
	}
	published := map[string]bool{}
	for i, id := range m.History {
		if i+1 < o.KeepSnapshots {
			keep[id] = true
		} else {
			published[id] = true
		}
	}
	speedBefore := m.Watermark.Modified.Add(-o.SpeedRetention)
	var out []string
	for _, obj := range listing {
		if f, ok := lake.ParseSpeedKey(obj.Key); ok {
			if _, kept := m.Models[lake.StateModel(f.Dataset)]; !kept {
				continue
			}
			f.Modified = obj.Modified
			if o.SpeedRetention > 0 && !m.Watermark.Modified.IsZero() && f.Modified.Before(speedBefore) {
				out = append(out, obj.Key)
			}
			continue
		}
		id, ok := lake.ParseSnapshotKey(obj.Key)
		if !ok || keep[id] || referenced[obj.Key] {
			continue
		}
		if published[id] {
			out = append(out, obj.Key)
			continue
		}
		started, ok := lake.SnapshotTime(id)
		if !ok || now.Sub(started) < o.OrphanGrace {
			continue
		}
		out = append(out, obj.Key)
	}
	sort.Strings(out)
	return out
}

// KeptSnapshots are the ids of the published snapshots of m's history that expiry
// keeps besides m itself.
func KeptSnapshots(m *lake.Manifest, o ExpireOptions) []string {
	var out []string
	for i, id := range m.History {
		if i+1 < o.KeepSnapshots {
			out = append(out, id)
		}
	}
	return out
}
