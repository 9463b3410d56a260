package flatten

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

func (e *evaluator) evalCall(o *op, this []item) ([]item, error) {
	in, err := e.eval(o.a, this)
	if err != nil {
		return nil, err
	}
	id := o.fn.id
	switch id {
	case fnWhere, fnSelect, fnAll, fnExists:
		if id == fnExists && len(o.args) == 0 {
			return e.boolOut(o, int8(boolInt(len(in) > 0))), nil
		}
		return e.lambda(o, in)
	case fnEmpty:
		return e.boolOut(o, int8(boolInt(len(in) == 0))), nil
	case fnNot:
		t, err := e.truth(in)
		if err != nil {
			return nil, fmt.Errorf("not(): %w", err)
		}
		if t < 0 {
			return nil, nil
		}
		return e.boolOut(o, 1-t), nil
	case fnFirst:
		if len(in) == 0 {
			return nil, nil
		}
		return in[:1], nil
	case fnLast:
		if len(in) == 0 {
			return nil, nil
		}
		return in[len(in)-1:], nil
	case fnTail:
		if len(in) == 0 {
			return nil, nil
		}
		return in[1:], nil
	case fnSkip, fnTake:
		n, err := e.intArg(o, 0, this)
		if err != nil {
			return nil, err
		}
		n = max(0, min(n, int64(len(in))))
		if id == fnSkip {
			return in[n:], nil
		}
		return in[:n], nil
	case fnCount:
		out := append(e.bufs[o.slot][:0], item{kind: vInt, typ: tInteger, i: int64(len(in))})
		e.bufs[o.slot] = out
		return out, nil
	case fnSingle:
		if len(in) > 1 {
			return nil, errSingleton("single()", len(in))
		}
		return in, nil
	case fnDistinct:
		out := e.bufs[o.slot][:0]
		for _, it := range in {
			if !e.contains(out, it) {
				out = append(out, it)
			}
		}
		e.bufs[o.slot] = out
		return out, nil
	case fnAllTrue, fnAnyTrue, fnAllFalse, fnAnyFalse:
		want := id == fnAllTrue || id == fnAnyTrue
		all := id == fnAllTrue || id == fnAllFalse
		res := all
		for _, it := range in {
			v, ok := e.scalar(it)
			if !ok || v.kind != vBool {
				return nil, fmt.Errorf("%s() expects booleans", o.name)
			}
			if all && v.b != want {
				res = false
			}
			if !all && v.b == want {
				res = true
			}
		}
		return e.boolOut(o, int8(boolInt(res))), nil
	case fnIif:
		c, err := e.eval(o.args[0], in)
		if err != nil {
			return nil, err
		}
		t, err := e.truth(c)
		if err != nil {
			return nil, fmt.Errorf("iif(): %w", err)
		}
		if t == 1 {
			return e.eval(o.args[1], in)
		}
		if len(o.args) == 3 {
			return e.eval(o.args[2], in)
		}
		return nil, nil
	case fnJoin:
		sep := ""
		if len(o.args) == 1 {
			s, err := e.eval(o.args[0], this)
			if err != nil {
				return nil, err
			}
			var ok bool
			if sep, ok = e.str(s); !ok {
				return nil, errors.New("join() expects a string separator")
			}
		}
		var b strings.Builder
		for k, it := range in {
			v, ok := e.scalar(it)
			if !ok {
				continue
			}
			if k > 0 {
				b.WriteString(sep)
			}
			b.WriteString(e.text(v))
		}
		out := append(e.bufs[o.slot][:0], item{kind: vStr, typ: tString, s: b.String()})
		e.bufs[o.slot] = out
		return out, nil
	case fnOfType:
		out := e.bufs[o.slot][:0]
		for _, it := range in {
			if e.isType(it, o.typ) {
				if it.typ == tNone && o.typ.ft != tNone && (it.kind != vNode || it.node < 0 || e.res.nodes[it.node].kind != kindObject) {
					it.typ = o.typ.ft
				}
				out = append(out, it)
			}
		}
		e.bufs[o.slot] = out
		return out, nil
	case fnIs, fnAs:
		if len(in) == 0 {
			return nil, nil
		}
		if len(in) > 1 {
			return nil, errSingleton(o.name+"()", len(in))
		}
		match := e.isType(in[0], o.typ)
		if id == fnAs {
			if match {
				return in, nil
			}
			return nil, nil
		}
		return e.boolOut(o, int8(boolInt(match))), nil
	case fnExtension:
		url, err := e.strArg(o, 0, this)
		if err != nil {
			return nil, err
		}
		out := e.bufs[o.slot][:0]
		for _, it := range in {
			mark := len(out)
			out = e.navigate(out, it, "extension")
			kept := out[:mark]
			for _, x := range out[mark:] {
				u, _, _ := e.res.field(x.node, "url")
				if u >= 0 && e.res.nodes[u].kind == kindString && e.res.str(u) == url {
					kept = append(kept, x)
				}
			}
			out = kept
		}
		e.bufs[o.slot] = out
		return out, nil
	case fnHasValue:
		if len(in) != 1 {
			return e.boolOut(o, 0), nil
		}
		v, ok := e.scalar(in[0])
		return e.boolOut(o, int8(boolInt(ok && v.kind != vNode))), nil
	case fnGetResourceKey:
		out := e.bufs[o.slot][:0]
		for _, it := range in {
			if it.kind != vNode || it.node < 0 {
				continue
			}
			// The root's resourceType was read by the parser.
			if it.node != e.res.root || e.res.typ == "" {
				if rt, _, _ := e.res.field(it.node, "resourceType"); rt < 0 {
					continue
				}
			}
			if id, _, _ := e.res.field(it.node, "id"); id >= 0 && e.res.nodes[id].kind == kindString {
				out = append(out, item{kind: vStr, typ: tString, s: e.res.str(id)})
			}
		}
		e.bufs[o.slot] = out
		return out, nil
	case fnGetReferenceKey:
		out := e.bufs[o.slot][:0]
		for _, it := range in {
			if it.kind != vNode || it.node < 0 || e.res.nodes[it.node].kind != kindObject {
				continue
			}
			ref, _, _ := e.res.field(it.node, "reference")
			if ref < 0 || e.res.nodes[ref].kind != kindString {
				continue
			}
			typ, key, ok := referenceKey(e.res.str(ref))
			if !ok {
				continue
			}
			if typ == "" {
				if t, _, _ := e.res.field(it.node, "type"); t >= 0 && e.res.nodes[t].kind == kindString {
					typ = e.res.str(t)
				}
			}
			if o.typ.name != "" && typ != "" && typ != o.typ.name {
				continue
			}
			out = append(out, item{kind: vStr, typ: tString, s: key})
		}
		e.bufs[o.slot] = out
		return out, nil
	case fnLowBoundary, fnHighBoundary:
		return e.boundary(o, in, this)
	case fnCodeSystemName:
		out := e.bufs[o.slot][:0]
		for _, it := range in {
			v, ok := e.scalar(it)
			if !ok || v.kind != vStr {
				continue
			}
			if name := codeSystemName(v.s); name != "" {
				out = append(out, item{kind: vStr, typ: tString, s: name})
			}
		}
		e.bufs[o.slot] = out
		return out, nil
	}
	return e.scalarFunc(o, in, this)
}

// lambda evaluates where, select, all and exists(criteria), which evaluate
// their argument once per input item with $this bound to it.
func (e *evaluator) lambda(o *op, in []item) ([]item, error) {
	id := o.fn.id
	saved := e.index
	defer func() { e.index = saved }()
	out := e.bufs[o.slot][:0]
	res := id == fnAll
	for k := range in {
		e.index = int64(k)
		r, err := e.eval(o.args[0], in[k:k+1])
		if err != nil {
			e.bufs[o.slot] = out
			return nil, err
		}
		if id == fnSelect {
			out = append(out, r...)
			continue
		}
		t, err := e.truth(r)
		if err != nil {
			e.bufs[o.slot] = out
			return nil, fmt.Errorf("%s(): %w", o.name, err)
		}
		switch id {
		case fnWhere:
			if t == 1 {
				out = append(out, in[k])
			}
		case fnAll:
			if t != 1 {
				res = false
			}
		case fnExists:
			if t == 1 {
				res = true
			}
		}
	}
	e.bufs[o.slot] = out
	if id == fnAll || id == fnExists {
		return e.boolOut(o, int8(boolInt(res))), nil
	}
	return out, nil
}

func (e *evaluator) intArg(o *op, k int, this []item) (int64, error) {
	v, err := e.eval(o.args[k], this)
	if err != nil {
		return 0, err
	}
	n, ok := e.integer(v)
	if !ok {
		return 0, fmt.Errorf("%s() expects an integer argument", o.name)
	}
	return n, nil
}

func (e *evaluator) strArg(o *op, k int, this []item) (string, error) {
	v, err := e.eval(o.args[k], this)
	if err != nil {
		return "", err
	}
	s, ok := e.str(v)
	if !ok {
		return "", fmt.Errorf("%s() expects a string argument", o.name)
	}
	return s, nil
}

// text renders a primitive value as FHIRPath's toString() does.
func (e *evaluator) text(v item) string {
	switch v.kind {
	case vBool:
		if v.b {
			return "true"
		}
		return "false"
	case vInt:
		return strconv.FormatInt(v.i, 10)
	case vDec, vStr:
		return v.s
	}
	return string(e.res.appendJSON(nil, v.node))
}

// referenceKey extracts the resource type and id a reference points to:
// "Patient/1", "https://server/fhir/Patient/1/_history/2" and "urn:uuid:…"
// (type unknown) resolve; contained ("#id") and conditional references
// ("Patient?identifier=…") do not.
func referenceKey(ref string) (typ, id string, ok bool) {
	if ref == "" || ref[0] == '#' || strings.IndexByte(ref, '?') >= 0 {
		return "", "", false
	}
	for _, prefix := range []string{"urn:uuid:", "urn:oid:"} {
		if strings.HasPrefix(ref, prefix) {
			return "", ref[len(prefix):], len(ref) > len(prefix)
		}
	}
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	ref = strings.TrimSuffix(ref, "/")
	slash := strings.LastIndexByte(ref, '/')
	if slash < 0 {
		return "", ref, ref != ""
	}
	id = ref[slash+1:]
	typ = ref[:slash]
	if s := strings.LastIndexByte(typ, '/'); s >= 0 {
		typ = typ[s+1:]
	}
	return typ, id, id != ""
}

// boundary implements lowBoundary() and highBoundary() for decimals,
// dates, dateTimes and times.
func (e *evaluator) boundary(o *op, in []item, this []item) ([]item, error) {
	high := o.fn.id == fnHighBoundary
	if len(o.args) == 1 {
		if _, err := e.intArg(o, 0, this); err != nil {
			return nil, err
		}
	}
	out := e.bufs[o.slot][:0]
	defer func() { e.bufs[o.slot] = out }()
	for _, it := range in {
		v, ok := e.scalar(it)
		if !ok {
			continue
		}
		switch v.kind {
		case vInt, vDec:
			if s, ok := decBoundary(decText(v), high); ok {
				out = append(out, item{kind: vDec, typ: tDecimal, s: s})
			}
		case vStr:
			t := v.typ
			if !isTemporal(t) {
				if t != tNone && t != tString {
					continue
				}
				switch d, ok := parseDateTime(v.s); {
				case ok && d.prec > precDay:
					t = tDateTime
				case ok:
					t = tDate
				default:
					if _, ok := parseTime(v.s); !ok {
						continue
					}
					t = tTime
				}
			}
			d, ok := temporal(v.s, t)
			if !ok {
				continue
			}
			b := d.boundary(high, t != tDate)
			out = append(out, item{kind: vStr, typ: t, s: b.format()})
		}
	}
	return out, nil
}

// scalarFunc implements the string and conversion functions, which apply
// to a single input value.
func (e *evaluator) scalarFunc(o *op, in []item, this []item) ([]item, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > 1 {
		return nil, errSingleton(o.name+"()", len(in))
	}
	v, ok := e.scalar(in[0])
	if !ok {
		return nil, nil
	}
	out := e.bufs[o.slot][:0]
	defer func() { e.bufs[o.slot] = out }()
	str := func(s string) []item {
		out = append(out, item{kind: vStr, typ: tString, s: s})
		return out
	}
	boolean := func(b bool) []item {
		out = append(out, item{kind: vBool, typ: tBoolean, b: b})
		return out
	}
	integer := func(i int64) []item {
		out = append(out, item{kind: vInt, typ: tInteger, i: i})
		return out
	}
	switch o.fn.id {
	case fnToString:
		if v.kind == vNode {
			return nil, nil
		}
		return str(e.text(v)), nil
	case fnToInteger:
		switch v.kind {
		case vInt:
			return integer(v.i), nil
		case vBool:
			return integer(boolInt(v.b)), nil
		case vStr:
			if i, err := strconv.ParseInt(v.s, 10, 64); err == nil {
				return integer(i), nil
			}
		}
		return nil, nil
	case fnToDecimal:
		switch v.kind {
		case vInt, vDec:
			out = append(out, item{kind: vDec, typ: tDecimal, s: decText(v)})
			return out, nil
		case vBool:
			out = append(out, item{kind: vDec, typ: tDecimal, s: strconv.FormatInt(boolInt(v.b), 10) + ".0"})
			return out, nil
		case vStr:
			if validDec(v.s) {
				out = append(out, item{kind: vDec, typ: tDecimal, s: v.s})
				return out, nil
			}
		}
		return nil, nil
	}
	if v.kind != vStr {
		return nil, fmt.Errorf("%s() expects a string", o.name)
	}
	s := v.s
	switch o.fn.id {
	case fnLength:
		return integer(int64(utf8.RuneCountInString(s))), nil
	case fnUpper:
		return str(strings.ToUpper(s)), nil
	case fnLower:
		return str(strings.ToLower(s)), nil
	case fnTrim:
		return str(strings.TrimSpace(s)), nil
	case fnStartsWith, fnEndsWith, fnContains, fnIndexOf:
		arg, err := e.strArg(o, 0, this)
		if err != nil {
			return nil, err
		}
		switch o.fn.id {
		case fnStartsWith:
			return boolean(strings.HasPrefix(s, arg)), nil
		case fnEndsWith:
			return boolean(strings.HasSuffix(s, arg)), nil
		case fnContains:
			return boolean(strings.Contains(s, arg)), nil
		}
		i := strings.Index(s, arg)
		if i > 0 {
			i = utf8.RuneCountInString(s[:i])
		}
		return integer(int64(i)), nil
	case fnSubstring:
		start, err := e.intArg(o, 0, this)
		if err != nil {
			return nil, err
		}
		runes := []rune(s)
		if start < 0 || start >= int64(len(runes)) {
			return nil, nil
		}
		end := int64(len(runes))
		if len(o.args) == 2 {
			n, err := e.intArg(o, 1, this)
			if err != nil {
				return nil, err
			}
			end = min(end, start+max(n, 0))
		}
		return str(string(runes[start:end])), nil
	case fnReplace:
		from, err := e.strArg(o, 0, this)
		if err != nil {
			return nil, err
		}
		to, err := e.strArg(o, 1, this)
		if err != nil {
			return nil, err
		}
		return str(strings.ReplaceAll(s, from, to)), nil
	case fnMatches:
		re := o.re
		if re == nil {
			pat, err := e.strArg(o, 0, this)
			if err != nil {
				return nil, err
			}
			if re, err = regexp.Compile(pat); err != nil {
				return nil, fmt.Errorf("matches(): %w", err)
			}
		}
		return boolean(re.MatchString(s)), nil
	}
	return nil, fmt.Errorf("function %s() is not implemented", o.name)
}

// codeSystemName returns the short name of a well-known code system URI
// (loinc, snomed, rxnorm, icd10, cvx, …) or "" when it has none. HL7
// terminology systems are named by their last path segment.
func codeSystemName(system string) string {
	switch system {
	case "http://loinc.org", "urn:oid:2.16.840.1.113883.6.1":
		return "loinc"
	case "http://snomed.info/sct", "urn:oid:2.16.840.1.113883.6.96":
		return "snomed"
	case "http://www.nlm.nih.gov/research/umls/rxnorm", "urn:oid:2.16.840.1.113883.6.88":
		return "rxnorm"
	case "http://hl7.org/fhir/sid/icd-10", "urn:oid:2.16.840.1.113883.6.3":
		return "icd10"
	case "http://hl7.org/fhir/sid/icd-10-cm", "urn:oid:2.16.840.1.113883.6.90":
		return "icd10cm"
	case "http://www.cms.gov/Medicare/Coding/ICD10", "http://hl7.org/fhir/sid/icd-10-pcs", "urn:oid:2.16.840.1.113883.6.4":
		return "icd10pcs"
	case "http://hl7.org/fhir/sid/icd-9-cm", "urn:oid:2.16.840.1.113883.6.103", "urn:oid:2.16.840.1.113883.6.104":
		return "icd9cm"
	case "http://hl7.org/fhir/sid/cvx", "urn:oid:2.16.840.1.113883.12.292":
		return "cvx"
	case "http://www.ama-assn.org/go/cpt", "urn:oid:2.16.840.1.113883.6.12":
		return "cpt"
	case "http://hl7.org/fhir/sid/ndc", "urn:oid:2.16.840.1.113883.6.69":
		return "ndc"
	case "http://unitsofmeasure.org", "urn:oid:2.16.840.1.113883.6.8":
		return "ucum"
	case "urn:oid:2.16.840.1.113883.6.238":
		return "cdcrec"
	case "http://nucc.org/provider-taxonomy", "urn:oid:2.16.840.1.113883.6.101":
		return "nucc"
	case "http://hl7.org/fhir/sid/us-npi", "urn:oid:2.16.840.1.113883.4.6":
		return "npi"
	case "http://hl7.org/fhir/sid/us-ssn", "urn:oid:2.16.840.1.113883.4.1":
		return "ssn"
	case "http://www.whocc.no/atc":
		return "atc"
	case "http://dicom.nema.org/resources/ontology/DCM":
		return "dicom"
	case "urn:ietf:bcp:47":
		return "bcp47"
	case "https://github.com/synthetichealth/synthea":
		return "synthea"
	}
	for _, prefix := range []string{
		"http://terminology.hl7.org/CodeSystem/",
		"http://hl7.org/fhir/us/core/CodeSystem/",
		"http://hl7.org/fhir/",
	} {
		if rest, ok := strings.CutPrefix(system, prefix); ok && rest != "" && strings.IndexByte(rest, '/') < 0 {
			return rest
		}
	}
	return ""
}
