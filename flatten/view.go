package flatten

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
)

// View is a compiled SQL-on-FHIR v2 ViewDefinition: a validated plan of
// FHIRPath expressions and the Arrow schema of its rows. A View is
// immutable and safe for concurrent use; evaluation state lives in a
// Batch (or the evaluator behind Rows).
type View struct {
	name     string
	resource string
	root     *selectPlan
	where    []*op
	cols     []*column
	slots    int
	shared   int // results cached per focus (see shareSpines)
	repeats  int
	schema   *arrow.Schema
	def      []byte // the ViewDefinition, to compile it again in a Plan
}

// Name returns the view's name (the ViewDefinition's name, or the resource
// type in lower case when it has none).
func (v *View) Name() string { return v.name }

// Resource returns the FHIR resource type the view reads.
func (v *View) Resource() string { return v.resource }

// Schema returns the Arrow schema of the view's rows. It depends only on
// the ViewDefinition, so it is known before any data arrives.
func (v *View) Schema() *arrow.Schema { return v.schema }

// Columns returns the names of the view's columns in order.
func (v *View) Columns() []string {
	names := make([]string, len(v.cols))
	for i, c := range v.cols {
		names[i] = c.name
	}
	return names
}

// column is one output column of a view. Columns of unionAll branches
// after the first alias the first branch's column.
type column struct {
	name       string
	fhirType   string // as declared, or inferred when the declaration has none
	collection bool
	expr       *op
	idx        int
	field      int // index of the column's first Arrow field
	alias      *column
}

// selMode is how a select iterates.
type selMode uint8

const (
	selPlain selMode = iota
	selForEach
	selForEachOrNull
	selRepeat
)

// selectPlan is one compiled select element.
type selectPlan struct {
	mode    selMode
	iter    *op   // forEach / forEachOrNull
	repeat  []*op // repeat paths
	repSlot int   // scratch slot of the repeat traversal
	cols    []*column
	subs    []*selectPlan
	union   []*selectPlan
}

// viewDefinition is the JSON form of a ViewDefinition.
type viewDefinition struct {
	ResourceType string                       `json:"resourceType"`
	Name         string                       `json:"name"`
	Resource     string                       `json:"resource"`
	Status       string                       `json:"status"`
	Constant     []map[string]json.RawMessage `json:"constant"`
	Select       []selectDefinition           `json:"select"`
	Where        []struct {
		Path        string `json:"path"`
		Description string `json:"description"`
	} `json:"where"`
}

type selectDefinition struct {
	Column        []columnDefinition `json:"column"`
	Select        []selectDefinition `json:"select"`
	ForEach       *string            `json:"forEach"`
	ForEachOrNull *string            `json:"forEachOrNull"`
	Repeat        []string           `json:"repeat"`
	UnionAll      []selectDefinition `json:"unionAll"`
}

type columnDefinition struct {
	Name        string `json:"name"`
	Path        string `json:"path"`
	Type        string `json:"type"`
	Collection  *bool  `json:"collection"`
	Description string `json:"description"`
}

// Column names must be usable unquoted in SQL, as the specification asks.
const columnNamePattern = `^[A-Za-z][A-Za-z0-9_]*$`

// Compile validates a ViewDefinition (JSON) and compiles it into a View.
// Errors name the view, the column and the expression at fault.
func Compile(def []byte) (*View, error) {
	return compileView(def, true)
}

// compileView compiles a ViewDefinition; share turns on the sharing of
// paths common to several columns (off only to test that sharing changes
// no result).
func compileView(def []byte, share bool) (*View, error) {
	vs, err := compileViews([][]byte{def}, share)
	if err != nil {
		return nil, err
	}
	return vs[0], nil
}

// compileViews compiles ViewDefinitions together, for one evaluator: the
// views number their scratch slots and cached results in one sequence, and
// the paths that expressions with the resource as focus have in common,
// in any select of any of the views, are evaluated once per resource.
func compileViews(defs [][]byte, share bool) ([]*View, error) {
	var (
		views    []*View
		slots    int
		shared   int
		resource []**op
	)
	for _, def := range defs {
		v, c, err := compileOne(def, share, slots, shared)
		if err != nil {
			return nil, err
		}
		views = append(views, v)
		slots, shared = c.expr.slots, c.shared
		resource = append(resource, c.resource...)
	}
	if share {
		shareExprs(resource, &shared, true)
	}
	for _, v := range views {
		v.slots, v.shared = slots, shared
	}
	return views, nil
}

// compileOne compiles one ViewDefinition, numbering its scratch slots from
// slots and its cached results from shared.
func compileOne(def []byte, share bool, slots, shared int) (*View, *viewCompiler, error) {
	var vd viewDefinition
	dec := json.NewDecoder(bytes.NewReader(def))
	dec.UseNumber()
	if err := dec.Decode(&vd); err != nil {
		return nil, nil, fmt.Errorf("compile view: decode ViewDefinition: %w", err)
	}
	name := vd.Name
	if name == "" {
		name = strings.ToLower(vd.Resource)
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("compile view %s: %s", strconv.Quote(name), fmt.Sprintf(format, args...))
	}
	if vd.ResourceType != "" && vd.ResourceType != "ViewDefinition" {
		return nil, nil, fail("resourceType is %q, want ViewDefinition", vd.ResourceType)
	}
	if vd.Resource == "" {
		return nil, nil, fail("resource is missing")
	}
	// Names become table and directory names downstream: keep them to
	// SQL identifiers, as the specification asks.
	idents := regexp.MustCompile(columnNamePattern)
	if !idents.MatchString(vd.Resource) {
		return nil, nil, fail("resource %q is not a resource type name", vd.Resource)
	}
	if !idents.MatchString(name) {
		return nil, nil, fail("name must match %s", columnNamePattern)
	}
	if len(vd.Select) == 0 {
		return nil, nil, fail("select is missing")
	}
	c := &viewCompiler{
		view:   name,
		expr:   exprCompiler{consts: map[string][]item{}, slots: slots},
		re:     idents,
		share:  share,
		shared: shared,
	}
	for _, cd := range vd.Constant {
		cname, v, err := constantValue(cd)
		if err != nil {
			return nil, nil, fail("%v", err)
		}
		if _, dup := c.expr.consts[cname]; dup {
			return nil, nil, fail("constant %s is defined twice", cname)
		}
		c.expr.consts[cname] = v
	}
	v := &View{name: name, resource: vd.Resource, def: bytes.Clone(def)} // the caller may reuse def
	for _, w := range vd.Where {
		if w.Path == "" {
			return nil, nil, fail("where without path")
		}
		o, err := c.expr.compileExpr(w.Path)
		if err != nil {
			return nil, nil, fail("where expression %q: %v", w.Path, err)
		}
		v.where = append(v.where, o)
	}
	for i := range v.where {
		c.resource = append(c.resource, &v.where[i])
	}
	root, cols, err := c.compileSelect(selectDefinition{Select: vd.Select}, "select", true)
	if err != nil {
		return nil, nil, err
	}
	seen := map[string]bool{}
	for _, col := range cols {
		if seen[col.name] {
			return nil, nil, fail("column %s is defined more than once", col.name)
		}
		seen[col.name] = true
		col.idx = len(v.cols)
		v.cols = append(v.cols, col)
	}
	for _, col := range c.all {
		target := col
		for target.alias != nil {
			target = target.alias
		}
		col.idx = target.idx
	}
	v.root = root
	v.repeats = c.repeats
	schema, err := buildSchema(v)
	if err != nil {
		return nil, nil, fail("%v", err)
	}
	v.schema = schema
	return v, c, nil
}

type viewCompiler struct {
	view    string
	expr    exprCompiler
	re      *regexp.Regexp
	all     []*column
	repeats int
	share   bool // share common column paths (see shareSpines)
	shared  int
	// resource holds the expressions whose focus is the resource: where,
	// the columns of selects that iterate nothing on the way from the
	// root, and the forEach paths read from those selects. They are
	// shared per resource across selects and views (compileViews).
	resource []**op
}

func (c *viewCompiler) errorf(format string, args ...any) error {
	return fmt.Errorf("compile view %s: %s", strconv.Quote(c.view), fmt.Sprintf(format, args...))
}

// compileSelect compiles a select element and returns it with the ordered
// columns it contributes: its own, then its selects', then its unionAll's.
// onResource tells that the select's input focus is the resource.
func (c *viewCompiler) compileSelect(sd selectDefinition, where string, onResource bool) (*selectPlan, []*column, error) {
	p := &selectPlan{}
	set := 0
	if sd.ForEach != nil {
		set++
		p.mode = selForEach
	}
	if sd.ForEachOrNull != nil {
		set++
		p.mode = selForEachOrNull
	}
	if sd.Repeat != nil {
		set++
		p.mode = selRepeat
	}
	if set > 1 {
		return nil, nil, c.errorf("%s: only one of forEach, forEachOrNull and repeat may be set", where)
	}
	switch p.mode {
	case selForEach, selForEachOrNull:
		path, kw := sd.ForEach, "forEach"
		if p.mode == selForEachOrNull {
			path, kw = sd.ForEachOrNull, "forEachOrNull"
		}
		o, err := c.expr.compileExpr(*path)
		if err != nil {
			return nil, nil, c.errorf("%s: %s expression %q: %v", where, kw, *path, err)
		}
		p.iter = o
		if onResource {
			c.resource = append(c.resource, &p.iter)
		}
	case selRepeat:
		if len(sd.Repeat) == 0 {
			return nil, nil, c.errorf("%s: repeat needs at least one path", where)
		}
		for _, path := range sd.Repeat {
			o, err := c.expr.compileExpr(path)
			if err != nil {
				return nil, nil, c.errorf("%s: repeat expression %q: %v", where, path, err)
			}
			p.repeat = append(p.repeat, o)
		}
		p.repSlot = c.repeats
		c.repeats++
	}
	var cols []*column
	for _, cd := range sd.Column {
		col, err := c.compileColumn(cd)
		if err != nil {
			return nil, nil, err
		}
		p.cols = append(p.cols, col)
		cols = append(cols, col)
	}
	// The select's own focus: the resource while nothing is iterated.
	onResource = onResource && p.mode == selPlain
	switch {
	case !c.share:
	case onResource:
		for _, col := range p.cols {
			c.resource = append(c.resource, &col.expr)
		}
	default:
		shareSpines(p.cols, &c.shared)
	}
	for i, sub := range sd.Select {
		sp, sc, err := c.compileSelect(sub, fmt.Sprintf("%s[%d].select", where, i), onResource)
		if err != nil {
			return nil, nil, err
		}
		p.subs = append(p.subs, sp)
		cols = append(cols, sc...)
	}
	var first []*column
	for i, branch := range sd.UnionAll {
		bp, bc, err := c.compileSelect(branch, fmt.Sprintf("%s.unionAll[%d]", where, i), onResource)
		if err != nil {
			return nil, nil, err
		}
		p.union = append(p.union, bp)
		if i == 0 {
			first = bc
			continue
		}
		if !slices.EqualFunc(first, bc, func(a, b *column) bool { return a.name == b.name }) {
			return nil, nil, c.errorf("%s.unionAll[%d]: columns %s differ from the first branch's %s",
				where, i, columnNames(bc), columnNames(first))
		}
		for k, col := range bc {
			if col.fhirType != first[k].fhirType || col.collection != first[k].collection {
				return nil, nil, c.errorf("%s.unionAll[%d]: column %s is %s, the first branch's is %s",
					where, i, col.name, describeColumn(col), describeColumn(first[k]))
			}
			col.alias = first[k]
		}
	}
	cols = append(cols, first...)
	if len(cols) == 0 && len(p.subs) == 0 && len(p.union) == 0 {
		return nil, nil, c.errorf("%s: a select needs a column, a select or a unionAll", where)
	}
	return p, cols, nil
}

func columnNames(cols []*column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	return "[" + strings.Join(names, ", ") + "]"
}

func describeColumn(c *column) string {
	if c.collection {
		return c.fhirType + " collection"
	}
	return c.fhirType
}

func (c *viewCompiler) compileColumn(cd columnDefinition) (*column, error) {
	if cd.Name == "" {
		return nil, c.errorf("column with path %q has no name", cd.Path)
	}
	if !c.re.MatchString(cd.Name) {
		return nil, c.errorf("column %s: name must match %s", cd.Name, columnNamePattern)
	}
	if cd.Path == "" {
		return nil, c.errorf("column %s: path is missing", cd.Name)
	}
	o, err := c.expr.compileExpr(cd.Path)
	if err != nil {
		return nil, c.errorf("column %s: expression %q: %v", cd.Name, cd.Path, err)
	}
	col := &column{name: cd.Name, fhirType: cd.Type, expr: o}
	if cd.Collection != nil {
		col.collection = *cd.Collection
	}
	if col.fhirType == "" {
		col.fhirType = inferredType(o.result)
	} else if lookupType(col.fhirType) == tNone {
		return nil, c.errorf("column %s: unknown type %q", cd.Name, cd.Type)
	}
	c.all = append(c.all, col)
	return col, nil
}

func inferredType(r resultKind) string {
	switch r {
	case resBool:
		return "boolean"
	case resInt:
		return "integer"
	case resDecimal:
		return "decimal"
	}
	return "string"
}

// constantValue reads a ViewDefinition constant: a name and one value[x].
func constantValue(cd map[string]json.RawMessage) (string, []item, error) {
	var name string
	if raw, ok := cd["name"]; !ok || json.Unmarshal(raw, &name) != nil || name == "" {
		return "", nil, errors.New("constant without a name")
	}
	var key string
	var raw json.RawMessage
	for k, v := range cd {
		if strings.HasPrefix(k, "value") {
			if key != "" {
				return "", nil, fmt.Errorf("constant %s has more than one value", name)
			}
			key, raw = k, v
		}
	}
	if key == "" {
		return "", nil, fmt.Errorf("constant %s has no value", name)
	}
	t := choiceSuffixType([]byte(key[len("value"):]))
	if !t.primitive() {
		return "", nil, fmt.Errorf("constant %s: unsupported type %s", name, key)
	}
	fail := func() (string, []item, error) {
		return "", nil, fmt.Errorf("constant %s: %s is not a valid %s", name, raw, t)
	}
	switch {
	case t == tBoolean:
		var b bool
		if json.Unmarshal(raw, &b) != nil {
			return fail()
		}
		return name, []item{{kind: vBool, typ: t, b: b}}, nil
	case t.is(tInteger) || t == tInteger64:
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
			var s string // integer64 is a string in JSON
			if json.Unmarshal(raw, &s) != nil {
				return fail()
			}
			n = json.Number(s)
		}
		i, err := n.Int64()
		if err != nil {
			return fail()
		}
		return name, []item{{kind: vInt, typ: t, i: i}}, nil
	case t == tDecimal:
		var n json.Number
		if json.Unmarshal(raw, &n) != nil || !validDec(n.String()) {
			return fail()
		}
		return name, []item{{kind: vDec, typ: t, s: n.String()}}, nil
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return fail()
	}
	switch t {
	case tDate, tDateTime, tInstant:
		if _, ok := parseDateTime(s); !ok {
			return fail()
		}
	case tTime:
		if _, ok := parseTime(s); !ok {
			return fail()
		}
	}
	return name, []item{{kind: vStr, typ: t, s: s}}, nil
}
