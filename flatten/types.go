package flatten

// ftype is a FHIR data type known to the evaluator. Zero means unknown: an
// element reached by name carries no type, because the evaluator works
// without the FHIR structure definitions; choice elements (value[x]) and
// constants carry the type their name or declaration gives them.
type ftype uint8

const (
	tNone ftype = iota
	tBase64Binary
	tBoolean
	tCanonical
	tCode
	tDate
	tDateTime
	tDecimal
	tID
	tInstant
	tInteger
	tInteger64
	tMarkdown
	tOid
	tPositiveInt
	tString
	tTime
	tUnsignedInt
	tURI
	tURL
	tUUID
	tXhtml
	tAddress
	tAge
	tAnnotation
	tAttachment
	tAvailability
	tCodeableConcept
	tCodeableReference
	tCoding
	tContactDetail
	tContactPoint
	tContributor
	tCount
	tDataRequirement
	tDistance
	tDosage
	tDuration
	tExpression
	tExtendedContactDetail
	tHumanName
	tIdentifier
	tMeta
	tMonetaryComponent
	tMoney
	tParameterDefinition
	tPeriod
	tQuantity
	tRange
	tRatio
	tRatioRange
	tReference
	tRelatedArtifact
	tSampledData
	tSignature
	tTiming
	tTriggerDefinition
	tUsageContext
	tVirtualServiceDetail
	numTypes
)

// firstComplex is the first complex (non-primitive) type.
const firstComplex = tAddress

// String returns the FHIR name of the type.
func (t ftype) String() string {
	switch t {
	case tBase64Binary:
		return "base64Binary"
	case tBoolean:
		return "boolean"
	case tCanonical:
		return "canonical"
	case tCode:
		return "code"
	case tDate:
		return "date"
	case tDateTime:
		return "dateTime"
	case tDecimal:
		return "decimal"
	case tID:
		return "id"
	case tInstant:
		return "instant"
	case tInteger:
		return "integer"
	case tInteger64:
		return "integer64"
	case tMarkdown:
		return "markdown"
	case tOid:
		return "oid"
	case tPositiveInt:
		return "positiveInt"
	case tString:
		return "string"
	case tTime:
		return "time"
	case tUnsignedInt:
		return "unsignedInt"
	case tURI:
		return "uri"
	case tURL:
		return "url"
	case tUUID:
		return "uuid"
	case tXhtml:
		return "xhtml"
	case tAddress:
		return "Address"
	case tAge:
		return "Age"
	case tAnnotation:
		return "Annotation"
	case tAttachment:
		return "Attachment"
	case tAvailability:
		return "Availability"
	case tCodeableConcept:
		return "CodeableConcept"
	case tCodeableReference:
		return "CodeableReference"
	case tCoding:
		return "Coding"
	case tContactDetail:
		return "ContactDetail"
	case tContactPoint:
		return "ContactPoint"
	case tContributor:
		return "Contributor"
	case tCount:
		return "Count"
	case tDataRequirement:
		return "DataRequirement"
	case tDistance:
		return "Distance"
	case tDosage:
		return "Dosage"
	case tDuration:
		return "Duration"
	case tExpression:
		return "Expression"
	case tExtendedContactDetail:
		return "ExtendedContactDetail"
	case tHumanName:
		return "HumanName"
	case tIdentifier:
		return "Identifier"
	case tMeta:
		return "Meta"
	case tMonetaryComponent:
		return "MonetaryComponent"
	case tMoney:
		return "Money"
	case tParameterDefinition:
		return "ParameterDefinition"
	case tPeriod:
		return "Period"
	case tQuantity:
		return "Quantity"
	case tRange:
		return "Range"
	case tRatio:
		return "Ratio"
	case tRatioRange:
		return "RatioRange"
	case tReference:
		return "Reference"
	case tRelatedArtifact:
		return "RelatedArtifact"
	case tSampledData:
		return "SampledData"
	case tSignature:
		return "Signature"
	case tTiming:
		return "Timing"
	case tTriggerDefinition:
		return "TriggerDefinition"
	case tUsageContext:
		return "UsageContext"
	case tVirtualServiceDetail:
		return "VirtualServiceDetail"
	}
	return "unknown"
}

func (t ftype) primitive() bool { return t != tNone && t < firstComplex }

// parent returns the type t is derived from in the FHIR type hierarchy
// (code is a string, url a uri, positiveInt an integer, Age a Quantity…).
func (t ftype) parent() ftype {
	switch t {
	case tCode, tID, tMarkdown:
		return tString
	case tURL, tCanonical, tOid, tUUID:
		return tURI
	case tPositiveInt, tUnsignedInt:
		return tInteger
	case tAge, tCount, tDistance, tDuration:
		return tQuantity
	}
	return tNone
}

// is reports whether t is want or derives from it.
func (t ftype) is(want ftype) bool {
	for ; t != tNone; t = t.parent() {
		if t == want {
			return true
		}
	}
	return false
}

// lookupType resolves a FHIR type name such as "dateTime" or "Coding".
func lookupType(name string) ftype {
	for t := ftype(1); t < numTypes; t++ {
		if t.String() == name {
			return t
		}
	}
	return tNone
}

// choiceSuffixType resolves the type suffix of a choice element's JSON
// name, e.g. "DateTime" in effectiveDateTime.
func choiceSuffixType(suffix []byte) ftype {
	switch string(suffix) {
	case "Base64Binary":
		return tBase64Binary
	case "Boolean":
		return tBoolean
	case "Canonical":
		return tCanonical
	case "Code":
		return tCode
	case "Date":
		return tDate
	case "DateTime":
		return tDateTime
	case "Decimal":
		return tDecimal
	case "Id":
		return tID
	case "Instant":
		return tInstant
	case "Integer":
		return tInteger
	case "Integer64":
		return tInteger64
	case "Markdown":
		return tMarkdown
	case "Oid":
		return tOid
	case "PositiveInt":
		return tPositiveInt
	case "String":
		return tString
	case "Time":
		return tTime
	case "UnsignedInt":
		return tUnsignedInt
	case "Uri":
		return tURI
	case "Url":
		return tURL
	case "Uuid":
		return tUUID
	case "Address":
		return tAddress
	case "Age":
		return tAge
	case "Annotation":
		return tAnnotation
	case "Attachment":
		return tAttachment
	case "Availability":
		return tAvailability
	case "CodeableConcept":
		return tCodeableConcept
	case "CodeableReference":
		return tCodeableReference
	case "Coding":
		return tCoding
	case "ContactDetail":
		return tContactDetail
	case "ContactPoint":
		return tContactPoint
	case "Contributor":
		return tContributor
	case "Count":
		return tCount
	case "DataRequirement":
		return tDataRequirement
	case "Distance":
		return tDistance
	case "Dosage":
		return tDosage
	case "Duration":
		return tDuration
	case "Expression":
		return tExpression
	case "ExtendedContactDetail":
		return tExtendedContactDetail
	case "HumanName":
		return tHumanName
	case "Identifier":
		return tIdentifier
	case "Meta":
		return tMeta
	case "MonetaryComponent":
		return tMonetaryComponent
	case "Money":
		return tMoney
	case "ParameterDefinition":
		return tParameterDefinition
	case "Period":
		return tPeriod
	case "Quantity":
		return tQuantity
	case "Range":
		return tRange
	case "Ratio":
		return tRatio
	case "RatioRange":
		return tRatioRange
	case "Reference":
		return tReference
	case "RelatedArtifact":
		return tRelatedArtifact
	case "SampledData":
		return tSampledData
	case "Signature":
		return tSignature
	case "Timing":
		return tTiming
	case "TriggerDefinition":
		return tTriggerDefinition
	case "UsageContext":
		return tUsageContext
	case "VirtualServiceDetail":
		return tVirtualServiceDetail
	}
	return tNone
}

// internType returns a shared string for common resource types, so that
// naming the type of a parsed resource does not allocate.
func internType(b []byte) string {
	switch string(b) {
	case "Patient":
		return "Patient"
	case "Encounter":
		return "Encounter"
	case "Observation":
		return "Observation"
	case "Condition":
		return "Condition"
	case "Procedure":
		return "Procedure"
	case "MedicationRequest":
		return "MedicationRequest"
	case "Immunization":
		return "Immunization"
	case "AllergyIntolerance":
		return "AllergyIntolerance"
	case "DiagnosticReport":
		return "DiagnosticReport"
	case "Practitioner":
		return "Practitioner"
	case "PractitionerRole":
		return "PractitionerRole"
	case "Organization":
		return "Organization"
	case "Location":
		return "Location"
	case "CarePlan":
		return "CarePlan"
	case "CareTeam":
		return "CareTeam"
	case "Claim":
		return "Claim"
	case "ExplanationOfBenefit":
		return "ExplanationOfBenefit"
	case "DocumentReference":
		return "DocumentReference"
	case "Provenance":
		return "Provenance"
	case "Device":
		return "Device"
	case "Goal":
		return "Goal"
	case "ImagingStudy":
		return "ImagingStudy"
	case "MedicationAdministration":
		return "MedicationAdministration"
	case "Medication":
		return "Medication"
	case "SupplyDelivery":
		return "SupplyDelivery"
	}
	return string(b)
}
