package flatten

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// defaultViewFiles holds the ViewDefinitions fhirlake ships with.
//
//go:embed views/*.json
var defaultViewFiles embed.FS

// DefaultViews compiles the embedded default views, sorted by name: one
// per common resource type, plus observation_component (a row per
// Observation.component). Every view starts with an id column.
func DefaultViews() ([]*View, error) {
	entries, err := fs.Glob(defaultViewFiles, "views/*.json")
	if err != nil {
		return nil, fmt.Errorf("default views: %w", err)
	}
	views := make([]*View, 0, len(entries))
	for _, name := range entries {
		data, err := defaultViewFiles.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("default views: %w", err)
		}
		v, err := Compile(data)
		if err != nil {
			return nil, fmt.Errorf("default views: %s: %w", path.Base(name), err)
		}
		views = append(views, v)
	}
	sortViews(views)
	return views, nil
}

// DefaultViewDefinition returns the JSON of the embedded default view with
// the given name, for inspection or as a starting point for a custom view.
func DefaultViewDefinition(name string) ([]byte, error) {
	data, err := defaultViewFiles.ReadFile("views/" + name + ".json")
	if err != nil {
		return nil, fmt.Errorf("default view %s: %w", name, err)
	}
	return data, nil
}

// LoadViews returns the default views overridden and extended by the
// ViewDefinitions (*.json) in dir: a view in dir replaces the default view
// of the same name, and views with new names are added. An empty dir
// returns the defaults. Any invalid file fails the whole load, so that a
// typo never silently drops a table.
func LoadViews(dir string) ([]*View, error) {
	views, err := DefaultViews()
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return views, nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, fmt.Errorf("load views %s: %w", dir, err)
	}
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("load views: %w", err)
	}
	byName := make(map[string]int, len(views))
	for i, v := range views {
		byName[v.Name()] = i
	}
	seen := map[string]string{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("load views: %w", err)
		}
		v, err := Compile(data)
		if err != nil {
			return nil, fmt.Errorf("load views: %s: %w", file, err)
		}
		if prev, dup := seen[v.Name()]; dup {
			return nil, fmt.Errorf("load views: %s and %s both define view %s", prev, file, v.Name())
		}
		seen[v.Name()] = file
		if i, ok := byName[v.Name()]; ok {
			views[i] = v
			continue
		}
		byName[v.Name()] = len(views)
		views = append(views, v)
	}
	sortViews(views)
	return views, nil
}

func sortViews(views []*View) {
	sort.Slice(views, func(i, j int) bool { return strings.Compare(views[i].Name(), views[j].Name()) < 0 })
}

// ViewsFor returns the views that read resources of the given type.
func ViewsFor(views []*View, resourceType string) []*View {
	var out []*View
	for _, v := range views {
		if v.Resource() == resourceType {
			out = append(out, v)
		}
	}
	return out
}
