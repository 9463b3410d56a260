package flatten

import (
	"fmt"
	"strings"
)

// Columns of one select often start with the same path: the code, system
// and display of code.coding.first(), the race code, display and text of
// extension('…us-core-race'), three columns of
// (name.where(use = 'official') | name).first(). Evaluated column by column,
// each would walk the resource again. shareSpines finds the paths that
// several columns of a select begin with and makes them one op, evaluated
// once per focus of the select and then served from the evaluator's cache.
//
// Only the spine of a column is shared: the chain of ops through their
// input (a.b.c.f(…)), all evaluated with the select's focus as $this.
// Arguments of functions (where's criteria, iif's branches) are evaluated
// with other foci and stay as they are. An op whose value depends on
// $index, which changes inside function arguments, is never shared.

// onSpine reports whether o takes its input from o.a and is evaluated with
// the same $this as its parent, so that the chain through a continues the
// spine.
func onSpine(o *op) bool {
	switch o.code {
	case opField, opTypeRoot, opCall, opIndexer, opNegate, opIs, opAs:
		return o.a != nil
	}
	return false
}

// shareSpines rewrites the expressions of cols (the columns of one select)
// so that every spine op that two or more of them have in common is
// evaluated once. next numbers the evaluator's cache entries; it is
// advanced by the number of entries used.
func shareSpines(cols []*column, next *int) {
	exprs := make([]**op, len(cols))
	for i, c := range cols {
		exprs[i] = &c.expr
	}
	shareExprs(exprs, next, false)
}

// shareExprs rewrites the expressions *exprs, all evaluated on the same
// focus, so that every spine op two or more of them have in common is
// evaluated once. perResource marks the shared ops as valid for the whole
// resource rather than for one focus of one select: exprs then hold every
// expression whose focus is the resource, across selects and views (see
// shareResource).
func shareExprs(exprs []**op, next *int, perResource bool) {
	if len(exprs) < 2 {
		return
	}
	keys := map[*op]string{}
	users := map[string]int{} // how many expressions have the key on their spine
	for _, e := range exprs {
		seen := map[string]bool{}
		for o := *e; o != nil && onSpine(o); o = o.a {
			k, ok := opKey(o, keys)
			if ok && !seen[k] {
				seen[k] = true
				users[k]++
			}
		}
	}
	shared := map[string]*op{} // key → the caching op that replaces it
	for _, e := range exprs {
		at := e
		// Users of the shared op above on this spine: a shorter path is
		// worth its own cache entry only when more columns start with it.
		above := 1
		for *at != nil && onSpine(*at) {
			o := *at
			k, ok := opKey(o, keys)
			if !ok || users[k] <= above {
				at = &o.a
				continue
			}
			if s, done := shared[k]; done {
				// Another column computes this path: use its result and
				// stop here, everything below is part of it.
				*at = s
				break
			}
			s := &op{code: opShared, a: o, slot: *next, result: o.result, src: o.src, perResource: perResource}
			*next++
			shared[k] = s
			*at = s
			above = users[k]
			// This column owns the shared op: go on down its spine, so
			// that a shorter path it shares with a third column is
			// computed once as well.
			at = &o.a
		}
	}
}

// opKey returns a text that is equal for two ops exactly when they compute
// the same thing from the same focus, and false when o depends on $index.
func opKey(o *op, memo map[*op]string) (string, bool) {
	if o == nil {
		return "", true
	}
	if k, ok := memo[o]; ok {
		return k, k != ""
	}
	memo[o] = "" // not shareable while in progress, or if a part is not
	if o.code == opIndexVar {
		return "", false
	}
	var b strings.Builder
	fmt.Fprintf(&b, "(%d %d %q %q %q %d %t %v", o.code, o.fn.id, o.name, o.binop, o.typ.name, o.typ.ft, o.typ.resource, o.lit)
	for _, sub := range append([]*op{o.a, o.b}, o.args...) {
		k, ok := opKey(sub, memo)
		if !ok {
			return "", false
		}
		b.WriteString(" ")
		b.WriteString(k)
	}
	b.WriteString(")")
	memo[o] = b.String()
	return memo[o], true
}
