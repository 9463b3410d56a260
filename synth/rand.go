package synth

// rng is a splitmix64 generator. It is used instead of math/rand so that the
// byte stream for a given seed never changes with the Go release: benchmark
// baselines and expected-state files stay comparable across toolchains.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return mix64(r.s)
}

// intn returns a value in [0, n); n must be positive and below 2^32.
func (r *rng) intn(n int) int {
	return int(((r.next() >> 32) * uint64(n)) >> 32)
}

// between returns a value in [lo, hi).
func (r *rng) between(lo, hi int) int { return lo + r.intn(hi-lo) }

// float returns a value in [0, 1).
func (r *rng) float() float64 { return float64(r.next()>>11) / (1 << 53) }

// uniform returns a value in [lo, hi).
func (r *rng) uniform(lo, hi float64) float64 { return lo + r.float()*(hi-lo) }

// mix64 is the splitmix64 finaliser, a good 64-bit hash of x.
func mix64(x uint64) uint64 {
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// hashString is 64-bit FNV-1a.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// Namespaces keep the ids of different kinds of objects apart.
const (
	nsResource uint64 = iota + 1
	nsBundle
	nsStatus
	nsStray // resources inside unroutable and malformed records
	nsPlan
	nsStream
)

// deriveUUID returns a UUID-formatted id that is a pure function of its
// inputs. The version nibble is 8 (RFC 9562 custom), because the value is
// derived, not random.
func deriveUUID(seed, ns, a, b, c uint64) string {
	h := mix64(seed ^ mix64(ns^mix64(a^mix64(b^mix64(c)))))
	l := mix64(h ^ 0x2545f4914f6cdd1d ^ mix64(c+ns))
	var u [16]byte
	for i := range 8 {
		u[i] = byte(h >> (56 - 8*i))
		u[8+i] = byte(l >> (56 - 8*i))
	}
	u[6] = u[6]&0x0f | 0x80
	u[8] = u[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	var s [36]byte
	j := 0
	for i, v := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j] = hex[v>>4]
		s[j+1] = hex[v&0xf]
		j += 2
	}
	return string(s[:])
}
