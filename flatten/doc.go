// Package flatten turns FHIR resources into typed Arrow columns with
// SQL-on-FHIR v2 ViewDefinitions.
//
// A ViewDefinition is compiled once into a View: its FHIRPath expressions
// are parsed, checked (unknown functions and constants, syntax errors,
// unionAll branches whose columns differ, duplicate column names; each
// error names the view, the column and the expression) and turned into a
// plan whose Arrow schema is known before any data arrives; a path that
// several columns of a select start with (code.coding.first() for a code,
// its system and display) is computed once per row. Each resource is
// parsed once, by a single-pass parser, into a compact tree that every
// view of its type then reads without touching the JSON again
// (BundleEntries hands out the resources of a Bundle without parsing it
// whole):
//
//	views, err := flatten.LoadViews(dir) // the embedded defaults, overridden by dir
//	batches := map[string][]*flatten.Batch{}
//	for _, v := range views {
//		batches[v.Resource()] = append(batches[v.Resource()], v.NewBatch(memory.DefaultAllocator))
//	}
//	var r flatten.Resource // reused: parsing allocates nothing once warm
//	for _, doc := range docs {
//		if err := r.Parse(doc); err != nil { … dead-letter doc … }
//		for _, b := range batches[r.ResourceType()] {
//			if _, err := b.Append(&r); err != nil { … dead-letter doc for this view … }
//		}
//	}
//	rec := batch.NewRecordBatch() // when the batch is big or old enough
//
// A View is immutable and safe for concurrent use. A Batch (builders plus
// the evaluator's scratch space) and a Resource being parsed belong to one
// goroutine; a parsed Resource may be read by several batches at once.
// Append is all or nothing per resource: on error none of the resource's
// rows are kept.
//
// # FHIRPath
//
// The evaluator implements the subset the specification and its
// conformance suite use, and a little more:
//
//   - paths, indexers, $this, $index, %constants, %rowIndex, %resource;
//     a leading resource type (Patient.name) is allowed
//   - literals: strings, integers, decimals (kept as written, so
//     1.0.lowBoundary() is 0.95), booleans, {}, @date, @dateTime, @Ttime
//   - operators: = != ~ !~ < > <= >= + - * / div mod & | and or xor
//     implies in contains is as, with three-valued logic
//   - functions: where select all exists empty not first last tail skip
//     take count single distinct allTrue anyTrue allFalse anyFalse iif
//     join ofType is as extension hasValue getResourceKey
//     getReferenceKey lowBoundary highBoundary toString toInteger
//     toDecimal startsWith endsWith contains substring length upper lower
//     trim replace matches indexOf, and codeSystemName
//
// The evaluator has no FHIR structure definitions. Choice elements are
// resolved from their JSON names (value → valueQuantity, typed Quantity),
// so ofType works on them, with FHIR's derivations (code and id are
// strings, url and uuid are uris, positiveInt is an integer). Elements
// reached by name have no declared type; ofType accepts them when their
// JSON form fits the type. Extensions of primitives ("_birthDate") are
// reachable: birthDate.extension(url) works.
//
// getReferenceKey resolves "Type/id", absolute URLs (with or without
// _history) and "urn:uuid:…" (whose type is then unknown and not checked
// against the argument); references to contained resources ("#id") and
// conditional references ("Type?identifier=…") have no key.
//
// codeSystemName() is an extension of this package: it maps a code system
// URI to a short name (loinc, snomed, rxnorm, icd10, icd10cm, cvx, cpt,
// ndc, ucum, cdcrec, nucc, npi, …; HL7 terminology systems by their last
// path segment) and yields nothing for systems it does not know.
//
// # Types
//
// Column types map to Arrow as described on Batch; a decimal column also
// gets its exact text in "<name>_text". A column without a type takes the
// type its expression is known to return (boolean, integer, decimal) and
// is a string otherwise. A column that is not a collection fails the
// resource when its expression returns more than one value, as the
// specification requires; the default views pick single values with
// first().
//
// # Default views
//
// DefaultViews compiles the ViewDefinitions embedded from views/: one per
// common resource type and observation_component, a row per
// Observation.component. Each starts with id (getResourceKey()), carries
// references as keys (getReferenceKey) and codes as code, system, short
// system name and display. The patient view has the US Core race,
// ethnicity and birth sex. document_reference reads metadata only, never
// the attachment content.
//
// # Conformance
//
// RunConformance runs the SQL-on-FHIR v2 conformance suite (a directory of
// test files) and returns a Report that marshals to the published test
// report format; Summary gives "N passed, M failed".
package flatten
