package query

// What a tenant's statement may use. The sandbox settings bound what DuckDB
// may reach (the tenant's directory, no external access, a locked
// configuration), but not what a SELECT may do inside them: a table
// function switches on logging or profiling to a file of the lake, a
// scalar function writes the log or reads a setting, a catalog function
// shows the views' SQL with the lake's absolute paths, a file reader takes
// any path the settings let through. So a statement is parsed with DuckDB's
// own parser (json_serialize_sql, one round trip) and runs only if
// everything it names is allowed — allowed, not "not denied": a function
// or a construct this file does not know is refused.
//
//   - Tables: the session's views (Catalog().Tables), unqualified or in
//     schema main, and the CTEs in scope where they are named. The helper
//     objects of schema lake, DuckDB's catalog views (duckdb_tables,
//     information_schema, pg_catalog) and file names read by a replacement
//     scan are none of these.
//   - Table functions: tableFunctions, which read only their arguments.
//   - Functions in expressions (scalar, aggregate, window): DuckDB's
//     built-in functions marked CONSISTENT (the same arguments give the same
//     answer, so they read nothing else), but readsState, plus clocks and
//     random numbers (volatileAllowed). A built-in macro is allowed if its
//     body is. Decided from duckdb_functions() (loadBuiltins) and kept in
//     testdata/allowed_functions.txt (builtins).
//   - Constructs: the query nodes, table references, modifiers and
//     expression classes below; DESCRIBE and SUMMARIZE of an allowed query,
//     not SHOW.

import (
	"context"
	"database/sql"
	"database/sql/driver"
	_ "embed" // the allowed functions
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/duckdb/duckdb-go/v2"
)

// ErrRefused is matched by every refusal of a statement before it runs:
// ErrNotReadOnly, ErrMultipleStatements, ErrEmptyStatement and a
// *RefusedError.
var ErrRefused = errors.New("statement refused")

// refusal is a refusal that says all there is to say in its message.
type refusal struct{ msg string }

func (r *refusal) Error() string { return r.msg }

func (r *refusal) Is(target error) bool { return target == ErrRefused }

// ErrEmptyStatement refuses a text that holds no statement: nothing, spaces
// or comments only.
var ErrEmptyStatement error = &refusal{"empty statement: the text holds no SQL"}

// RefusedError names what a statement uses that is not allowed: a function,
// a table function, a table, or a construct such as SHOW. Name is as the
// statement wrote it (lower case), never anything of the lake.
type RefusedError struct {
	Kind, Name string
}

func (e *RefusedError) Error() string { return fmt.Sprintf("%s %q is not allowed", e.Kind, e.Name) }

// Is matches ErrRefused, and ErrNotReadOnly too: a SELECT that uses what is
// not allowed is not known to be read-only, and a caller that tests for
// ErrNotReadOnly refuses it alike.
func (e *RefusedError) Is(target error) bool {
	return target == ErrRefused || target == ErrNotReadOnly
}

// tableFunctions are the table functions a statement may call: each makes
// rows from its arguments alone.
var tableFunctions = map[string]bool{
	"range":           true, // a series of numbers or timestamps: a dashboard's calendar
	"generate_series": true, // the same, the end included
	"unnest":          true, // a list's elements as rows
	"json_each":       true, // a JSON value's members as rows: a resource's arrays
	"json_tree":       true, // the same, recursively
}

// readsState are the built-in functions DuckDB marks CONSISTENT whose
// answer depends on more than their arguments, or that take SQL text.
var readsState = map[string]string{
	"current_setting":      "reads a setting: paths, limits",
	"getvariable":          "reads a variable of the instance",
	"version":              "names the DuckDB build",
	"json_serialize_plan":  "binds and plans a SQL text: reads what it names, shows the views' plans and their paths",
	"json_serialize_sql":   "parses a SQL text",
	"json_deserialize_sql": "writes a SQL text",
}

// volatileAllowed are built-in functions DuckDB does not mark CONSISTENT
// that a dashboard needs and that read nothing of the session but a clock
// or a random source, or raise the caller's own error.
var volatileAllowed = map[string]bool{
	"now": true, "current_date": true, "today": true, "get_current_time": true,
	"get_current_timestamp": true, "transaction_timestamp": true,
	"random": true, "gen_random_uuid": true, "uuid": true, "uuidv4": true, "uuidv7": true,
	"error": true,
}

// binderFunctions are called like functions but bound by DuckDB's binder,
// not found in duckdb_functions(): unnest and its alias in a select list.
var binderFunctions = map[string]bool{"unnest": true, "unlist": true}

// valueKeywords are the names DuckDB's binder turns into a function call
// when no column has that name (GetSQLValueFunctionName): `SELECT
// current_schema` parses to a column reference and runs current_schema().
// A column reference so named is checked as the call it may become.
var valueKeywords = map[string]string{
	"current_catalog":   "current_catalog",
	"current_date":      "current_date",
	"current_role":      "current_role",
	"current_schema":    "current_schema",
	"current_time":      "get_current_time",
	"current_timestamp": "get_current_timestamp",
	"current_user":      "current_user",
	"localtime":         "current_localtime",
	"localtimestamp":    "current_localtimestamp",
	"session_user":      "session_user",
	"user":              "user",
}

// queryKinds are the "type" of the query nodes, table references, result
// modifiers and ORDER BY terms a statement may hold. Type descriptions
// (*_TYPE_INFO) are allowed too; anything else is refused.
var queryKinds = map[string]bool{
	"SELECT_NODE": true, "SET_OPERATION_NODE": true, "RECURSIVE_CTE_NODE": true,
	"JOIN": true, "SUBQUERY": true, "EXPRESSION_LIST": true, "EMPTY": true, "PIVOT": true,
	"ORDER_MODIFIER": true, "LIMIT_MODIFIER": true, "LIMIT_PERCENT_MODIFIER": true, "DISTINCT_MODIFIER": true,
	"ORDER_DEFAULT": true, "ASCENDING": true, "DESCENDING": true,
}

// expressionClasses are the expression classes a statement may hold.
var expressionClasses = map[string]bool{
	"BETWEEN": true, "CASE": true, "CAST": true, "COLLATE": true, "COLUMN_REF": true,
	"COMPARISON": true, "CONJUNCTION": true, "CONSTANT": true, "FUNCTION": true,
	"LAMBDA": true, "OPERATOR": true, "PARAMETER": true, "POSITIONAL_REFERENCE": true,
	"STAR": true, "SUBQUERY": true, "WINDOW": true,
}

// parseSQL asks DuckDB to parse q: its statements as JSON, nulls and empty
// fields left out.
const parseSQL = "SELECT CAST(json_serialize_sql(CAST(? AS VARCHAR), skip_empty := true, skip_null := true) AS VARCHAR)"

// parsed is json_serialize_sql's answer.
type parsed struct {
	Error        bool   `json:"error"`
	ErrorType    string `json:"error_type"`
	ErrorMessage string `json:"error_message"`
	Statements   []any  `json:"statements"`
}

// syntaxError is a text DuckDB's parser does not understand.
type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return "syntax: " + e.msg }

// parseStatement parses q on the driver connection c into its one SELECT.
func parseStatement(ctx context.Context, c driver.Conn, q string) (map[string]any, error) {
	qc, ok := c.(driver.QueryerContext)
	if !ok {
		return nil, errors.New("driver cannot run queries")
	}
	rows, err := qc.QueryContext(ctx, parseSQL, []driver.NamedValue{{Ordinal: 1, Value: q}})
	if err != nil {
		return nil, fmt.Errorf("parse statement: %w", err)
	}
	defer rows.Close()
	dest := make([]driver.Value, 1)
	if err := rows.Next(dest); err != nil {
		if errors.Is(err, io.EOF) {
			err = errors.New("no answer")
		}
		return nil, fmt.Errorf("parse statement: %w", err)
	}
	text, ok := dest[0].(string)
	if !ok {
		return nil, fmt.Errorf("parse statement: got %T", dest[0])
	}
	var p parsed
	if err := json.Unmarshal([]byte(text), &p); err != nil {
		return nil, fmt.Errorf("parse statement: %w", err)
	}
	switch {
	case p.Error && p.ErrorType == "parser":
		return nil, &syntaxError{p.ErrorMessage}
	case p.Error && strings.Contains(p.ErrorMessage, "Only SELECT"):
		return nil, ErrNotReadOnly
	case p.Error:
		return nil, fmt.Errorf("%w: %s", ErrNotReadOnly, p.ErrorMessage)
	case len(p.Statements) == 0:
		return nil, ErrEmptyStatement
	case len(p.Statements) > 1:
		return nil, ErrMultipleStatements
	}
	st, ok := p.Statements[0].(map[string]any)
	if !ok {
		return nil, errors.New("parse statement: no statement in the answer")
	}
	return st, nil
}

// checker checks one parsed statement against the allowlist.
type checker struct {
	// function reports whether a built-in function may be called in an
	// expression; its name is lower case and unqualified.
	function func(name string) bool
	// tables are the views a statement may name, lower case.
	tables map[string]bool
	// named collects the views the statement names, when set.
	named map[string]bool
}

// scope is the CTE names a table reference may name where it stands.
type scope []string

func (s scope) has(name string) bool { return slices.Contains(s, name) }

func (s scope) with(names ...string) scope {
	return append(slices.Clip(s), names...)
}

// statement checks a statement as json_serialize_sql gives it.
func (c *checker) statement(st map[string]any) error {
	return c.walk(st, nil)
}

func (c *checker) walk(v any, sc scope) error {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if err := c.walk(e, sc); err != nil {
				return err
			}
		}
	case map[string]any:
		return c.object(x, sc)
	}
	return nil
}

// fields walks every field of o but those named in skip.
func (c *checker) fields(o map[string]any, sc scope, skip ...string) error {
	// In a fixed order, so that of two refusals the same one is reported.
	keys := make([]string, 0, len(o))
	for k := range o {
		if !slices.Contains(skip, k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := c.walk(o[k], sc); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) object(o map[string]any, sc scope) error {
	if class, ok := o["class"].(string); ok {
		return c.expression(class, o, sc)
	}
	typ, _ := o["type"].(string)
	switch {
	case typ == "":
		// A container: the statement, a CTE, a value, a type.
		return c.fields(o, sc)
	case typ == "SELECT_NODE", typ == "SET_OPERATION_NODE", typ == "RECURSIVE_CTE_NODE":
		return c.queryNode(typ, o, sc)
	case typ == "BASE_TABLE":
		return c.table(o, sc)
	case typ == "TABLE_FUNCTION":
		return c.tableFunction(o, sc)
	case typ == "SHOW_REF":
		return c.show(o, sc)
	case queryKinds[typ], strings.HasSuffix(typ, "_TYPE_INFO"):
		return c.fields(o, sc)
	}
	return &RefusedError{Kind: "construct", Name: typ}
}

// queryNode walks a query node: its CTEs first, each seeing those before
// it, then the rest seeing them all. The recursive part of a recursive
// CTE (the right side of its UNION) sees its own name as well. A CTE's body
// does not see its own name otherwise: DuckDB binds that name to the
// catalog there (WITH duckdb_views AS (SELECT * FROM duckdb_views) reads
// DuckDB's view).
func (c *checker) queryNode(typ string, o map[string]any, sc scope) error {
	inner := sc
	if m, ok := o["cte_map"].(map[string]any); ok {
		entries, _ := m["map"].([]any)
		for _, e := range entries {
			entry, _ := e.(map[string]any)
			name, _ := entry["key"].(string)
			if err := c.walk(entry["value"], inner); err != nil {
				return err
			}
			inner = inner.with(strings.ToLower(name))
		}
	}
	if typ == "RECURSIVE_CTE_NODE" {
		name, _ := o["cte_name"].(string)
		if err := c.walk(o["right"], inner.with(strings.ToLower(name))); err != nil {
			return err
		}
		return c.fields(o, inner, "cte_map", "right")
	}
	return c.fields(o, inner, "cte_map")
}

// table checks a table reference: a CTE in scope or a view of the session.
func (c *checker) table(o map[string]any, sc scope) error {
	catalog := lowerField(o, "catalog_name")
	schema := lowerField(o, "schema_name")
	name := lowerField(o, "table_name")
	switch {
	case catalog == "" && schema == "" && sc.has(name):
	case catalog == "" && (schema == "" || schema == "main") && c.tables[name]:
		if c.named != nil {
			c.named[name] = true
		}
	default:
		return &RefusedError{Kind: "table", Name: qualified(catalog, schema, name)}
	}
	return c.fields(o, sc)
}

// tableFunction checks a table function in FROM, then its arguments.
func (c *checker) tableFunction(o map[string]any, sc scope) error {
	f, _ := o["function"].(map[string]any)
	name, ok := functionName(f)
	if !ok || !tableFunctions[name] {
		return &RefusedError{Kind: "table function", Name: writtenName(f)}
	}
	if err := c.fields(f, sc, "function_name", "schema", "catalog", "class", "type"); err != nil {
		return err
	}
	return c.fields(o, sc, "function")
}

// show allows DESCRIBE and SUMMARIZE of a query (DESCRIBE patient is
// DESCRIBE SELECT * FROM patient), not SHOW TABLES and the like, which name
// DuckDB's catalog.
func (c *checker) show(o map[string]any, sc scope) error {
	switch typ, _ := o["show_type"].(string); {
	case (typ == "DESCRIBE" || typ == "SUMMARY") && lowerField(o, "table_name") == "" && o["query"] != nil:
		return c.fields(o, sc)
	case typ == "SUMMARY":
		return &RefusedError{Kind: "statement", Name: "SUMMARIZE"}
	case typ == "DESCRIBE":
		return &RefusedError{Kind: "statement", Name: "DESCRIBE"}
	}
	return &RefusedError{Kind: "statement", Name: "SHOW"}
}

func (c *checker) expression(class string, o map[string]any, sc scope) error {
	switch class {
	case "CONSTANT":
		return nil
	case "COLUMN_REF":
		names, _ := o["column_names"].([]any)
		if len(names) > 0 {
			last, _ := names[len(names)-1].(string)
			if f, ok := valueKeywords[strings.ToLower(last)]; ok && !c.function(f) {
				return &RefusedError{Kind: "function", Name: strings.ToLower(last)}
			}
		}
		return nil
	case "FUNCTION", "WINDOW":
		name, ok := functionName(o)
		if !ok || (!c.function(name) && !binderFunctions[name]) {
			return &RefusedError{Kind: "function", Name: writtenName(o)}
		}
	}
	if !expressionClasses[class] {
		return &RefusedError{Kind: "expression", Name: class}
	}
	return c.fields(o, sc)
}

// functionName is a function's name, lower case, if it is unqualified or
// qualified by a schema of DuckDB's built-in functions.
func functionName(f map[string]any) (string, bool) {
	name := lowerField(f, "function_name")
	schema := lowerField(f, "schema")
	catalog := lowerField(f, "catalog")
	if name == "" || (catalog != "" && catalog != "system") || (schema != "" && schema != "main" && schema != "pg_catalog") {
		return "", false
	}
	return name, true
}

// writtenName is a function's name as written, qualifiers included.
func writtenName(f map[string]any) string {
	return qualified(lowerField(f, "catalog"), lowerField(f, "schema"), lowerField(f, "function_name"))
}

func qualified(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ".")
}

func lowerField(o map[string]any, key string) string {
	s, _ := o[key].(string)
	return strings.ToLower(s)
}

// builtins are DuckDB's built-in functions as the checker needs them: the
// names of the scalar functions, aggregates and macros a statement may
// call. They are a property of the DuckDB library linked in, so they are
// decided when it changes, not in each process: loadBuiltins applies the
// rule to duckdb_functions(), and its answer is kept in
// testdata/allowed_functions.txt, embedded here, which TestBuiltinFunctions
// checks against the library linked in. Reading DuckDB's catalog and
// parsing every built-in macro took a new worker 0.15–0.3 s before its
// first answer.
var builtins = sync.OnceValues(func() (map[string]bool, error) {
	allowed := map[string]bool{}
	for _, name := range strings.Split(allowedFunctions, "\n") {
		if name != "" {
			allowed[name] = true
		}
	}
	if len(allowed) == 0 {
		return nil, errors.New("built-in functions: the embedded list is empty")
	}
	return allowed, nil
})

// allowedFunctions lists the functions allowed, one name a line.
//
//go:embed testdata/allowed_functions.txt
var allowedFunctions string

// builtinFunction is one row of duckdb_functions().
type builtinFunction struct {
	kind, stability, macro string
}

func loadBuiltins(ctx context.Context) (map[string]bool, error) {
	connector, err := duckdb.NewConnector("", nil)
	if err != nil {
		return nil, fmt.Errorf("built-in functions: %w", err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	db.SetMaxOpenConns(1)
	rows, err := db.QueryContext(ctx, `SELECT lower(function_name), function_type, coalesce(stability, ''), coalesce(macro_definition, '')
		FROM duckdb_functions() WHERE internal AND function_type IN ('scalar', 'aggregate', 'macro')`)
	if err != nil {
		return nil, fmt.Errorf("built-in functions: %w", err)
	}
	defs := map[string][]builtinFunction{}
	for rows.Next() {
		var name string
		var f builtinFunction
		if err := rows.Scan(&name, &f.kind, &f.stability, &f.macro); err != nil {
			rows.Close()
			return nil, fmt.Errorf("built-in functions: %w", err)
		}
		defs[name] = append(defs[name], f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("built-in functions: %w", err)
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("built-in functions: %w", err)
	}
	defer conn.Close()
	r := &resolver{defs: defs, allowed: map[string]bool{}, pending: map[string]bool{}}
	err = conn.Raw(func(dc any) error {
		c, ok := dc.(driver.Conn)
		if !ok {
			return errors.New("driver cannot run queries")
		}
		r.parse = func(body string) (map[string]any, error) { return parseStatement(ctx, c, "SELECT "+body) }
		names := make([]string, 0, len(defs))
		for name := range defs {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			r.resolve(name)
		}
		return r.err
	})
	if err != nil {
		return nil, fmt.Errorf("built-in functions: %w", err)
	}
	return r.allowed, nil
}

// resolver decides the built-in functions one name at a time: a macro's
// body may call other functions and macros, decided first.
type resolver struct {
	defs    map[string][]builtinFunction
	allowed map[string]bool
	// pending are the names being decided, so that a macro reaching itself
	// is refused instead of looping.
	pending map[string]bool
	parse   func(body string) (map[string]any, error)
	err     error
}

// resolve reports whether name may be called: every function and macro of
// that name (DuckDB picks among them by schema and arguments) is allowed.
func (r *resolver) resolve(name string) bool {
	if ok, done := r.allowed[name]; done {
		return ok
	}
	if r.pending[name] {
		return false
	}
	if len(r.defs[name]) == 0 {
		return false
	}
	r.pending[name] = true
	defer delete(r.pending, name)
	ok := true
	for _, f := range r.defs[name] {
		ok = ok && r.allows(name, f)
	}
	r.allowed[name] = ok
	return ok
}

func (r *resolver) allows(name string, f builtinFunction) bool {
	if f.kind != "macro" {
		_, state := readsState[name]
		return (f.stability == "CONSISTENT" && !state) || volatileAllowed[name]
	}
	st, err := r.parse(f.macro)
	if err != nil {
		if r.err == nil {
			r.err = fmt.Errorf("macro %s: %w", name, err)
		}
		return false
	}
	c := &checker{function: r.resolve}
	return c.statement(st) == nil
}

// checkAllowed parses q on the driver connection c and refuses it unless it
// is one SELECT that uses only what is allowed, naming the views in
// tables.
func checkAllowed(ctx context.Context, c driver.Conn, q string, tables []Table) error {
	_, err := allowedViews(ctx, c, q, tables)
	return err
}

// allowedViews is checkAllowed, and the views of tables the statement
// names (outside a CTE of the same name), sorted, when it is allowed.
func allowedViews(ctx context.Context, c driver.Conn, q string, tables []Table) ([]string, error) {
	st, err := parseStatement(ctx, c, q)
	if err != nil {
		return nil, err
	}
	functions, err := builtins()
	if err != nil {
		return nil, err
	}
	names := make(map[string]string, len(tables))
	allowed := make(map[string]bool, len(tables))
	for _, t := range tables {
		names[strings.ToLower(t.Name)] = t.Name
		allowed[strings.ToLower(t.Name)] = true
	}
	ch := &checker{function: func(n string) bool { return functions[n] }, tables: allowed, named: map[string]bool{}}
	if err := ch.statement(st); err != nil {
		return nil, err
	}
	var named []string
	for n := range ch.named {
		named = append(named, names[n])
	}
	sort.Strings(named)
	return named, nil
}
