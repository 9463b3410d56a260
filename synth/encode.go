package synth

import (
	"strconv"
	"time"
)

// The generator writes JSON by appending to a reused buffer instead of
// marshalling structs: it is the benchmark load, and reflection-based
// encoding would dominate the profile of the very consumer it measures.

// appendString appends s as a JSON string. Only the characters JSON requires
// are escaped; UTF-8 passes through unchanged.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			const hex = "0123456789abcdef"
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendIntString appends n as a JSON string, e.g. "42".
func appendIntString(b []byte, n int64) []byte {
	b = append(b, '"')
	b = strconv.AppendInt(b, n, 10)
	return append(b, '"')
}

// appendDecimal appends v with the given number of decimals as a JSON number.
func appendDecimal(b []byte, v float64, decimals int) []byte {
	return strconv.AppendFloat(b, v, 'f', decimals, 64)
}

// appendInstant appends ms (Unix milliseconds) as a quoted FHIR instant with
// millisecond precision in UTC, e.g. "2025-01-06T08:00:00.000Z".
func appendInstant(b []byte, ms int64) []byte {
	t := time.UnixMilli(ms).UTC()
	b = append(b, '"')
	b = appendYMD(b, t)
	b = append(b, 'T')
	b = appendHMS(b, t)
	b = append(b, '.')
	b = appendPadded(b, t.Nanosecond()/1e6, 3)
	return append(b, 'Z', '"')
}

// appendDateTime appends ms as a quoted FHIR dateTime with second precision
// in UTC, e.g. "2024-03-01T10:15:00Z".
func appendDateTime(b []byte, ms int64) []byte {
	t := time.UnixMilli(ms).UTC()
	b = append(b, '"')
	b = appendYMD(b, t)
	b = append(b, 'T')
	b = appendHMS(b, t)
	return append(b, 'Z', '"')
}

// appendDate appends ms as a quoted FHIR date, e.g. "1980-04-12".
func appendDate(b []byte, ms int64) []byte {
	t := time.UnixMilli(ms).UTC()
	b = append(b, '"')
	b = appendYMD(b, t)
	return append(b, '"')
}

func appendYMD(b []byte, t time.Time) []byte {
	y, m, d := t.Date()
	b = appendPadded(b, y, 4)
	b = append(b, '-')
	b = appendPadded(b, int(m), 2)
	b = append(b, '-')
	return appendPadded(b, d, 2)
}

func appendHMS(b []byte, t time.Time) []byte {
	h, mi, s := t.Clock()
	b = appendPadded(b, h, 2)
	b = append(b, ':')
	b = appendPadded(b, mi, 2)
	b = append(b, ':')
	return appendPadded(b, s, 2)
}

// appendPadded appends a non-negative n left-padded with zeros to width.
func appendPadded(b []byte, n, width int) []byte {
	var tmp [20]byte
	i := len(tmp)
	for n > 0 || i == len(tmp) {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
	}
	for len(tmp)-i < width {
		i--
		tmp[i] = '0'
	}
	return append(b, tmp[i:]...)
}
