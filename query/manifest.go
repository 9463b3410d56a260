package query

import (
	"os"

	"fhirlake/lake"
)

// The views (views.go) read the batch snapshot's manifest, whose format package
// lake defines, through the three names below; each goes once the views name
// lake's own.

// Manifest is the batch snapshot's manifest, lake.Manifest.
type Manifest = lake.Manifest

// ReadManifest reads the manifest of the lake rooted at the local directory root;
// nil without an error before the first compaction.
func ReadManifest(root string) (*Manifest, error) { return lake.ReadManifest(os.DirFS(root)) }

func validModelName(n string) bool { return lake.ValidModelName(n) }
