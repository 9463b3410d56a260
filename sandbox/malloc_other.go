//go:build !linux || !cgo

package sandbox

// FewerMallocArenas does nothing where glibc's allocator is not in use.
func FewerMallocArenas() {}
