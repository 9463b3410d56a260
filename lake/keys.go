package lake

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Keys and prefixes of a tenant's lake: docs/format/README.md.
const (
	// SpeedPrefix holds the speed layer (docs/format/speed.md).
	SpeedPrefix = "speed/"
	// BatchPrefix holds the batch snapshots (docs/format/snapshot.md).
	BatchPrefix = "batch/"
	// ManifestKey names the current batch snapshot; writing it publishes one
	// (docs/format/snapshot.md).
	ManifestKey = "_manifest/batch.json"
)

// partitionLayout formats a speed file's date partition (date=YYYY-MM-DD).
const partitionLayout = time.DateOnly

// DatasetPrefix is the key prefix of a speed dataset's files: speed/<dataset>/.
func DatasetPrefix(dataset string) string { return SpeedPrefix + dataset + "/" }

// SpeedGlob matches every file of a speed dataset, relative to the tenant's root:
// speed/<dataset>/*/*.parquet, for DuckDB's read_parquet or filepath.Glob.
func SpeedGlob(dataset string) string { return DatasetPrefix(dataset) + "*/*.parquet" }

// PartitionPrefix is the directory of a dataset's speed files of one day (UTC):
// speed/<dataset>/date=YYYY-MM-DD/.
func PartitionPrefix(dataset string, date time.Time) string {
	return DatasetPrefix(dataset) + "date=" + date.UTC().Format(partitionLayout) + "/"
}

// Range is one Kafka partition's offset range, first to last inclusive.
type Range struct {
	Partition   int32
	First, Last int64
}

// Key is the object key of a speed file holding one partition's range of topic,
// in the dataset's partition of date (the date of the range's first record). It
// depends only on Kafka coordinates and that date, so a redelivered range
// overwrites its own files instead of duplicating them (docs/format/speed.md).
func Key(dataset string, date time.Time, topic string, partition int32, first, last int64) string {
	return MergedKey(dataset, date, topic, []Range{{partition, first, last}})
}

// MergedKey is the key of a file holding several partitions' ranges of one topic:
// Key's name with every range after the first appended as
// _<partition>-<first>-<last>, in partition order. With one range it is Key. A
// name that would pass MaxMergedName bytes (file systems refuse names over 255,
// and a local lake keeps speed files on disk) keeps the
// first range and replaces the others by their count and a hash of all of them:
// _<n>more-<hex>.
func MergedKey(dataset string, date time.Time, topic string, ranges []Range) string {
	rs := slices.Clone(ranges)
	slices.SortFunc(rs, func(a, b Range) int { return cmp.Compare(a.Partition, b.Partition) })
	var name strings.Builder
	name.WriteString(topic)
	for i, r := range rs {
		if i > 0 {
			name.WriteByte('_')
		} else {
			name.WriteByte('-')
		}
		fmt.Fprintf(&name, "%d-%d-%d", r.Partition, r.First, r.Last)
	}
	n := name.String()
	if len(n) > MaxMergedName && len(rs) > 1 {
		sum := sha256.Sum256([]byte(n))
		n = fmt.Sprintf("%s-%d-%d-%d_%dmore-%x", topic, rs[0].Partition, rs[0].First, rs[0].Last, len(rs)-1, sum[:8])
	}
	return PartitionPrefix(dataset, date) + n + ".parquet"
}

// MaxMergedName bounds the name MergedKey gives a file of several ranges, without
// its .parquet suffix.
const MaxMergedName = 200

// SpeedFile is one file of the speed layer.
type SpeedFile struct {
	Key string
	// Dataset is the directory under speed/: RawDataset or a view's name.
	Dataset string
	// Date is the file's date partition, YYYY-MM-DD.
	Date string
	// Name is the file name inside the partition.
	Name string
	// Size and Modified come from the listing, not the key; ParseSpeedKey leaves
	// them zero.
	Size     int64
	Modified time.Time
}

// ParseSpeedKey reads a speed-layer key, speed/<dataset>/date=YYYY-MM-DD/<name>.parquet;
// ok is false for anything else (a temporary file, a file outside the layout, a key
// that is not clean). Any name ending in .parquet is a speed file, whether or not
// ParseSpeedName can read its ranges.
func ParseSpeedKey(key string) (f SpeedFile, ok bool) {
	rest, found := strings.CutPrefix(key, SpeedPrefix)
	if !found || !CleanKey(key) {
		return f, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || !ValidDataset(parts[0]) || !strings.HasSuffix(parts[2], ".parquet") || strings.HasPrefix(parts[2], ".") {
		return f, false
	}
	date, found := strings.CutPrefix(parts[1], "date=")
	if !found {
		return f, false
	}
	if _, err := time.Parse(partitionLayout, date); err != nil {
		return f, false
	}
	return SpeedFile{Key: key, Dataset: parts[0], Date: date, Name: parts[2]}, true
}

// SpeedName is what a speed file's name says of the records it holds.
type SpeedName struct {
	Topic string
	// Ranges are the offset ranges the name lists, in partition order.
	Ranges []Range
	// Omitted counts the ranges a name shortened by MergedKey replaced by a hash:
	// the file holds them too, but the name does not say which they are.
	Omitted int
}

// ParseSpeedName reads the name of a file that Key or MergedKey named (with or
// without its directory and .parquet suffix); ok is false for any other name.
func ParseSpeedName(name string) (n SpeedName, ok bool) {
	base := strings.TrimSuffix(path.Base(name), ".parquet")
	// The first range follows the topic and a dash; each further range, or the
	// count and hash of the omitted ones, follows an underscore. A topic may hold
	// both, but its last underscore is always followed by at least four dashed
	// fields (the rest of the topic and the first range), which no suffix has.
	var tail []Range
	for {
		i := strings.LastIndexByte(base, '_')
		if i < 0 {
			break
		}
		suffix := base[i+1:]
		if r, ok := parseRange(strings.Split(suffix, "-")); ok {
			tail = append(tail, r)
		} else if more, ok := parseOmitted(suffix); ok && len(tail) == 0 && n.Omitted == 0 {
			n.Omitted = more
		} else {
			break
		}
		base = base[:i]
	}
	f := strings.Split(base, "-")
	if len(f) < 4 {
		return SpeedName{}, false
	}
	first, ok := parseRange(f[len(f)-3:])
	if !ok {
		return SpeedName{}, false
	}
	n.Topic = strings.Join(f[:len(f)-3], "-")
	if n.Topic == "" {
		return SpeedName{}, false
	}
	n.Ranges = append(n.Ranges, first)
	for i := len(tail) - 1; i >= 0; i-- {
		n.Ranges = append(n.Ranges, tail[i])
	}
	if n.Omitted > 0 && len(n.Ranges) > 1 {
		return SpeedName{}, false
	}
	for i := 1; i < len(n.Ranges); i++ {
		if n.Ranges[i].Partition < n.Ranges[i-1].Partition {
			return SpeedName{}, false
		}
	}
	return n, true
}

// parseRange reads <partition>-<first>-<last>.
func parseRange(f []string) (Range, bool) {
	if len(f) != 3 {
		return Range{}, false
	}
	p, err1 := strconv.ParseInt(f[0], 10, 32)
	a, err2 := strconv.ParseInt(f[1], 10, 64)
	b, err3 := strconv.ParseInt(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || p < 0 || a < 0 || a > b {
		return Range{}, false
	}
	return Range{int32(p), a, b}, true
}

// parseOmitted reads <n>more-<16 hex digits>.
func parseOmitted(s string) (int, bool) {
	count, hash, ok := strings.Cut(s, "more-")
	if !ok || len(hash) != 16 {
		return 0, false
	}
	for _, c := range hash {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return 0, false
		}
	}
	n, err := strconv.Atoi(count)
	if err != nil || n < 1 {
		return 0, false
	}
	return n, true
}

// ValidDataset reports whether name can be a speed dataset: lowercase letters,
// digits and underscores, starting with a letter, at most 128 bytes. It is a
// directory name and a SQL identifier downstream.
func ValidDataset(name string) bool { return validIdent(name) }

// validIdent accepts [a-z][a-z0-9_]*, at most 128 bytes.
func validIdent(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

// CleanKey reports whether key is a clean relative object key: no leading slash, no
// empty, "." or ".." segment, no backslash or NUL, nothing that could resolve
// outside the directory it is joined to.
func CleanKey(key string) bool {
	if key == "" || strings.ContainsAny(key, "\\\x00") || path.Clean("/"+key) != "/"+key {
		return false
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}
