package main

import _ "embed"

// patient14 is the 14-column Patient view of the flatten package's
// benchmarks (flatten/testdata/patient14.json), the column set quoted for
// other FHIRPath engines.
//
//go:embed patient14.json
var patient14 []byte
