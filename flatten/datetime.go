package flatten

import (
	"strconv"
	"time"
)

// Precisions of a partial date, dateTime or time, from coarse to fine.
const (
	precYear uint8 = iota + 1
	precMonth
	precDay
	precHour
	precMinute
	precSecond // includes any fraction of a second
)

// dtm is a FHIR date, dateTime, instant or time with the precision it was
// written with. A time has no date part: its precision counts from precHour.
type dtm struct {
	year, month, day     int
	hour, minute, second int
	nanos                int
	prec                 uint8
	fracDigits           uint8
	tz                   bool
	tzMin                int // offset east of UTC, minutes
	isTime               bool
}

func digitsAt(s string, i, n int) (int, bool) {
	if i+n > len(s) {
		return 0, false
	}
	v := 0
	for k := i; k < i+n; k++ {
		c := s[k]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// parseDateTime parses a date, dateTime or instant: YYYY[-MM[-DD[Thh[:mm[:ss[.f…]]][tz]]]].
// A trailing "T" with nothing after it (a FHIRPath dateTime literal) is accepted.
func parseDateTime(s string) (dtm, bool) {
	var d dtm
	var ok bool
	if d.year, ok = digitsAt(s, 0, 4); !ok {
		return dtm{}, false
	}
	d.prec, d.month, d.day = precYear, 1, 1
	i := 4
	if i < len(s) && s[i] == '-' {
		if d.month, ok = digitsAt(s, i+1, 2); !ok || d.month < 1 || d.month > 12 {
			return dtm{}, false
		}
		d.prec, i = precMonth, i+3
		if i < len(s) && s[i] == '-' {
			if d.day, ok = digitsAt(s, i+1, 2); !ok || d.day < 1 || d.day > daysIn(d.year, d.month) {
				return dtm{}, false
			}
			d.prec, i = precDay, i+3
		}
	}
	if i == len(s) {
		return d, true
	}
	if s[i] != 'T' {
		return dtm{}, false
	}
	i++
	if i == len(s) {
		return d, true
	}
	if d.prec != precDay {
		return dtm{}, false
	}
	n, ok := parseClock(s[i:], &d)
	if !ok {
		return dtm{}, false
	}
	i += n
	if i == len(s) {
		return d, true
	}
	switch s[i] {
	case 'Z':
		d.tz = true
		i++
	case '+', '-':
		h, ok1 := digitsAt(s, i+1, 2)
		m, ok2 := digitsAt(s, i+4, 2)
		if !ok1 || !ok2 || i+3 >= len(s) || s[i+3] != ':' || h > 14 || m > 59 {
			return dtm{}, false
		}
		d.tz, d.tzMin = true, h*60+m
		if s[i] == '-' {
			d.tzMin = -d.tzMin
		}
		i += 6
	}
	return d, i == len(s)
}

// parseClock parses hh[:mm[:ss[.f…]]] into d and returns the bytes used.
func parseClock(s string, d *dtm) (int, bool) {
	var ok bool
	if d.hour, ok = digitsAt(s, 0, 2); !ok || d.hour > 23 {
		return 0, false
	}
	d.prec = precHour
	i := 2
	if i < len(s) && s[i] == ':' {
		if d.minute, ok = digitsAt(s, i+1, 2); !ok || d.minute > 59 {
			return 0, false
		}
		d.prec, i = precMinute, i+3
		if i < len(s) && s[i] == ':' {
			if d.second, ok = digitsAt(s, i+1, 2); !ok || d.second > 60 {
				return 0, false
			}
			d.prec, i = precSecond, i+3
			if i < len(s) && s[i] == '.' {
				i++
				start := i
				scale := 100000000
				for i < len(s) && s[i] >= '0' && s[i] <= '9' {
					d.nanos += int(s[i]-'0') * scale
					scale /= 10
					i++
				}
				if i == start {
					return 0, false
				}
				d.fracDigits = uint8(min(i-start, 9))
			}
		}
	}
	return i, true
}

// parseTime parses a FHIR time: hh[:mm[:ss[.f…]]].
func parseTime(s string) (dtm, bool) {
	d := dtm{isTime: true}
	n, ok := parseClock(s, &d)
	if !ok || n != len(s) {
		return dtm{}, false
	}
	return d, true
}

func daysIn(year, month int) int {
	return time.Date(year, time.Month(month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// utc returns d shifted to UTC when it has a time of day and a zone.
func (d dtm) utc() dtm {
	if !d.tz || d.tzMin == 0 || d.isTime || d.prec < precHour {
		return d
	}
	t := time.Date(d.year, time.Month(d.month), d.day, d.hour, d.minute, d.second, d.nanos, time.UTC).
		Add(-time.Duration(d.tzMin) * time.Minute)
	d.year, d.month, d.day = t.Year(), int(t.Month()), t.Day()
	d.hour, d.minute = t.Hour(), t.Minute()
	d.tzMin = 0
	return d
}

// compareDtm compares two temporal values. ok is false when the answer is
// unknown: they agree up to the coarser precision but have different
// precisions (@2012 versus @2012-01), or one is a time and the other not.
func compareDtm(a, b dtm) (c int, ok bool) {
	if a.isTime != b.isTime {
		return 0, false
	}
	if a.tz && b.tz {
		a, b = a.utc(), b.utc()
	}
	av := [...]int{a.year, a.month, a.day, a.hour, a.minute, a.second*1e9 + a.nanos}
	bv := [...]int{b.year, b.month, b.day, b.hour, b.minute, b.second*1e9 + b.nanos}
	from := 0
	if a.isTime {
		from = int(precHour) - 1
	}
	common := min(a.prec, b.prec)
	for k := from; k < int(common); k++ {
		if av[k] != bv[k] {
			if av[k] < bv[k] {
				return -1, true
			}
			return 1, true
		}
	}
	if a.prec != b.prec {
		return 0, false
	}
	return 0, true
}

// boundary fills the missing components of d with their lowest or highest
// value. A dateTime without a zone is given the widest zone (+14:00 for the
// low boundary, -12:00 for the high one), so that the interval covers
// every place on earth.
func (d dtm) boundary(high bool, asDateTime bool) dtm {
	if !d.isTime {
		if d.prec < precMonth {
			d.month = 1
			if high {
				d.month = 12
			}
		}
		if d.prec < precDay {
			d.day = 1
			if high {
				d.day = daysIn(d.year, d.month)
			}
		}
	}
	if d.isTime || asDateTime {
		if d.prec < precHour {
			d.hour = 0
			if high {
				d.hour = 23
			}
		}
		if d.prec < precMinute {
			d.minute = 0
			if high {
				d.minute = 59
			}
		}
		if d.prec < precSecond {
			d.second = 0
			if high {
				d.second = 59
			}
		}
		if d.prec < precSecond || d.fracDigits < 3 {
			ms := d.nanos / 1e6
			if high && d.fracDigits == 0 {
				ms = 999
			}
			d.nanos = ms * 1e6
		}
		d.fracDigits = max(d.fracDigits, 3)
		if !d.isTime && !d.tz {
			d.tz, d.tzMin = true, 14*60
			if high {
				d.tzMin = -12 * 60
			}
		}
		d.prec = precSecond
	} else {
		d.prec = precDay
	}
	return d
}

// format writes d back in FHIR syntax at its precision.
func (d dtm) format() string {
	b := make([]byte, 0, 32)
	pad := func(v, n int) {
		s := strconv.Itoa(v)
		for k := len(s); k < n; k++ {
			b = append(b, '0')
		}
		b = append(b, s...)
	}
	if !d.isTime {
		pad(d.year, 4)
		if d.prec >= precMonth {
			b = append(b, '-')
			pad(d.month, 2)
		}
		if d.prec >= precDay {
			b = append(b, '-')
			pad(d.day, 2)
		}
		if d.prec < precHour {
			return string(b)
		}
		b = append(b, 'T')
	}
	pad(d.hour, 2)
	if d.prec >= precMinute {
		b = append(b, ':')
		pad(d.minute, 2)
	}
	if d.prec >= precSecond {
		b = append(b, ':')
		pad(d.second, 2)
		if d.fracDigits > 0 {
			b = append(b, '.')
			frac := d.nanos
			for k := 9; k > int(d.fracDigits); k-- {
				frac /= 10
			}
			pad(frac, int(d.fracDigits))
		}
	}
	if d.tz && !d.isTime {
		if d.tzMin == 0 && d.prec >= precHour {
			b = append(b, 'Z')
		} else {
			m := d.tzMin
			sign := byte('+')
			if m < 0 {
				sign, m = '-', -m
			}
			b = append(b, sign)
			pad(m/60, 2)
			b = append(b, ':')
			pad(m%60, 2)
		}
	}
	return string(b)
}

// epochDays returns the day of d (its first day when partial) counted from
// 1970-01-01.
func (d dtm) epochDays() int64 {
	return time.Date(d.year, time.Month(d.month), d.day, 0, 0, 0, 0, time.UTC).Unix() / 86400
}

// epochMicros returns the first instant of d in microseconds since the
// Unix epoch. A value without a zone is read as UTC.
func (d dtm) epochMicros() int64 {
	t := time.Date(d.year, time.Month(d.month), d.day, d.hour, d.minute, d.second, d.nanos, time.UTC)
	return t.UnixMicro() - int64(d.tzMin)*60e6
}

// dayMicros returns the time of day of d in microseconds since midnight.
func (d dtm) dayMicros() int64 {
	return ((int64(d.hour)*60+int64(d.minute))*60+int64(d.second))*1e6 + int64(d.nanos)/1e3
}
