package flatten

import (
	"fmt"
	"slices"
	"strconv"
)

// taskKind is a step of the row walk.
type taskKind uint8

const (
	taskSelect taskKind = iota // iterate a select (forEach, repeat) or enter it
	taskBody                   // evaluate a select's columns on one focus, then its children
	taskUnion                  // run each unionAll branch
)

// task is a pending step of the row walk. Tasks form linked lists through
// next: the rest of the work that completes a row once this step is done.
type task struct {
	kind taskKind
	sel  *selectPlan
	// empty marks the focus of a forEachOrNull that had nothing to
	// iterate: its columns are evaluated over an empty collection.
	empty    bool
	rowIndex int64
	next     int32
}

// walker produces the rows of one view over one resource. A row is the
// cross product of the selects of a level: the walk visits every select
// of the tree for every row, so each row sees freshly evaluated columns.
type walker struct {
	view  *View
	ev    *evaluator
	vals  [][]item // current value of each column; nil is null
	tasks []task
	foci  []item // focus of each task, parallel to tasks
	reps  [][]item
	stack []item
	emit  func() error
	// rootBuf holds the resource as a one-item collection.
	rootBuf [1]item
}

// newWalker returns a walker of v's rows that evaluates with ev, an
// evaluator of v or of the Plan v belongs to.
func newWalker(v *View, ev *evaluator, emit func() error) *walker {
	return &walker{
		view: v,
		ev:   ev,
		vals: make([][]item, len(v.cols)),
		reps: make([][]item, v.repeats),
		emit: emit,
	}
}

// run evaluates the view over r, calling emit once per row.
func (w *walker) run(r *Resource) error {
	w.ev.reset(r)
	w.tasks = w.tasks[:0]
	w.foci = w.foci[:0]
	root := w.ev.root()
	w.rootBuf[0] = root
	rootColl := w.rootBuf[:]
	if r.typ != w.view.resource {
		return nil
	}
	for _, o := range w.view.where {
		res, err := w.ev.eval(o, rootColl)
		if err != nil {
			return fmt.Errorf("where %q: %w", o.src, err)
		}
		switch len(res) {
		case 0:
			return nil
		case 1:
			v, ok := w.ev.scalar(res[0])
			if !ok {
				return nil
			}
			if v.kind != vBool {
				return fmt.Errorf("where %q: returned a %s, want a boolean", o.src, kindName(v))
			}
			if !v.b {
				return nil
			}
		default:
			return fmt.Errorf("where %q: returned %d values, want one boolean", o.src, len(res))
		}
	}
	return w.walk(w.push(task{kind: taskBody, sel: w.view.root, next: -1}, root))
}

func kindName(v item) string {
	switch v.kind {
	case vBool:
		return "boolean"
	case vInt:
		return "integer"
	case vDec:
		return "decimal"
	case vStr:
		if v.typ != tNone {
			return v.typ.String()
		}
		return "string"
	}
	return "complex value"
}

func (w *walker) push(t task, focus item) int32 {
	w.tasks = append(w.tasks, t)
	w.foci = append(w.foci, focus)
	return int32(len(w.tasks) - 1)
}

func (w *walker) walk(t int32) error {
	if t < 0 {
		return w.emit()
	}
	tk := w.tasks[t]
	s := tk.sel
	switch tk.kind {
	case taskSelect:
		if s.mode == selPlain {
			return w.body(t)
		}
		w.ev.rowIndex = tk.rowIndex
		var items []item
		if s.mode == selRepeat {
			var err error
			if items, err = w.repeat(s, t); err != nil {
				return err
			}
		} else {
			var err error
			if items, err = w.ev.eval(s.iter, w.focus(t)); err != nil {
				return fmt.Errorf("forEach %q: %w", s.iter.src, err)
			}
		}
		if len(items) == 0 {
			if s.mode != selForEachOrNull {
				return nil
			}
			return w.walk(w.push(task{kind: taskBody, sel: s, empty: true, next: tk.next}, item{}))
		}
		for k := range items {
			child := w.push(task{kind: taskBody, sel: s, rowIndex: int64(k), next: tk.next}, items[k])
			if err := w.walk(child); err != nil {
				return err
			}
		}
		return nil
	case taskBody:
		return w.body(t)
	default: // taskUnion
		for _, b := range s.union {
			if err := w.walk(w.push(task{kind: taskSelect, sel: b, rowIndex: tk.rowIndex, empty: tk.empty, next: tk.next}, w.foci[t])); err != nil {
				return err
			}
		}
		return nil
	}
}

// focus returns the focus collection of task t.
func (w *walker) focus(t int32) []item {
	if w.tasks[t].empty {
		return nil
	}
	return w.foci[t : t+1]
}

// body evaluates the columns of task t's select on its focus and goes on
// with the select's children and the rest of the row.
func (w *walker) body(t int32) error {
	tk := w.tasks[t]
	s := tk.sel
	w.ev.rowIndex = tk.rowIndex
	w.ev.newFocus()
	for _, c := range s.cols {
		v, err := w.ev.eval(c.expr, w.focus(t))
		if err != nil {
			return fmt.Errorf("column %s (%q): %w", c.name, c.expr.src, err)
		}
		if len(v) > 1 && !c.collection {
			return fmt.Errorf("column %s (%q): %d values; declare it a collection or pick one with first()", c.name, c.expr.src, len(v))
		}
		if v == nil {
			v = []item{}
		}
		w.vals[c.idx] = v
	}
	focus := w.foci[t]
	next := tk.next
	if len(s.union) > 0 {
		next = w.push(task{kind: taskUnion, sel: s, rowIndex: tk.rowIndex, empty: tk.empty, next: next}, focus)
	}
	for j := len(s.subs) - 1; j >= 0; j-- {
		next = w.push(task{kind: taskSelect, sel: s.subs[j], rowIndex: tk.rowIndex, empty: tk.empty, next: next}, focus)
	}
	return w.walk(next)
}

// repeat collects, depth first, every item reachable from task t's focus
// by repeatedly following the select's repeat paths.
func (w *walker) repeat(s *selectPlan, t int32) ([]item, error) {
	out := w.reps[s.repSlot][:0]
	stack := w.stack[:0]
	// Pushing children in reverse keeps document order when popping.
	expand := func(focus item) error {
		mark := len(stack)
		for _, p := range s.repeat {
			res, err := w.ev.eval(p, []item{focus})
			if err != nil {
				return fmt.Errorf("repeat %q: %w", p.src, err)
			}
			stack = append(stack, res...)
		}
		slices.Reverse(stack[mark:])
		return nil
	}
	if !w.tasks[t].empty {
		if err := expand(w.foci[t]); err != nil {
			return nil, err
		}
	}
	const limit = 1 << 20
	for len(stack) > 0 {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		out = append(out, it)
		if len(out) > limit {
			return nil, fmt.Errorf("repeat: more than %s items", strconv.Itoa(limit))
		}
		if err := expand(it); err != nil {
			return nil, err
		}
	}
	w.stack = stack
	w.reps[s.repSlot] = out
	return out, nil
}
