package lake

import (
	"encoding/json"
	"fmt"
	"strings"
)

// The FHIR R4 (4.0.1) Patient compartment, the one table that says which resources
// belong to a patient: https://hl7.org/fhir/R4/compartmentdefinition-patient.html.
// The definition names, per resource type, the search parameters whose reference to a
// Patient puts a resource in that patient's compartment; each parameter is mapped here
// to the reference elements its R4 SearchParameter expression reads
// (https://hl7.org/fhir/R4/searchparameter-registry.html), as dotted paths in the
// resource's JSON. A "where(resolve() is Patient)" in an expression is the reference
// being to a Patient, which PatientRefs checks for every path. Resource types the
// definition lists without parameters are never in the compartment and are left out.
// docs/format/erasure.md names the table as the source of an erasure's resources.
var patientCompartment = map[string][]compartmentParam{
	"Account":                     {{"subject", []string{"subject"}}},
	"AdverseEvent":                {{"subject", []string{"subject"}}},
	"AllergyIntolerance":          {{"patient", []string{"patient"}}, {"recorder", []string{"recorder"}}, {"asserter", []string{"asserter"}}},
	"Appointment":                 {{"actor", []string{"participant.actor"}}},
	"AppointmentResponse":         {{"actor", []string{"actor"}}},
	"AuditEvent":                  {{"patient", []string{"agent.who", "entity.what"}}},
	"Basic":                       {{"patient", []string{"subject"}}, {"author", []string{"author"}}},
	"BodyStructure":               {{"patient", []string{"patient"}}},
	"CarePlan":                    {{"patient", []string{"subject"}}, {"performer", []string{"activity.detail.performer"}}},
	"CareTeam":                    {{"patient", []string{"subject"}}, {"participant", []string{"participant.member"}}},
	"ChargeItem":                  {{"subject", []string{"subject"}}},
	"Claim":                       {{"patient", []string{"patient"}}, {"payee", []string{"payee.party"}}},
	"ClaimResponse":               {{"patient", []string{"patient"}}},
	"ClinicalImpression":          {{"subject", []string{"subject"}}},
	"Communication":               {{"subject", []string{"subject"}}, {"sender", []string{"sender"}}, {"recipient", []string{"recipient"}}},
	"CommunicationRequest":        {{"subject", []string{"subject"}}, {"sender", []string{"sender"}}, {"recipient", []string{"recipient"}}, {"requester", []string{"requester"}}},
	"Composition":                 {{"subject", []string{"subject"}}, {"author", []string{"author"}}, {"attester", []string{"attester.party"}}},
	"Condition":                   {{"patient", []string{"subject"}}, {"asserter", []string{"asserter"}}},
	"Consent":                     {{"patient", []string{"patient"}}},
	"Coverage":                    {{"policy-holder", []string{"policyHolder"}}, {"subscriber", []string{"subscriber"}}, {"beneficiary", []string{"beneficiary"}}, {"payor", []string{"payor"}}},
	"CoverageEligibilityRequest":  {{"patient", []string{"patient"}}},
	"CoverageEligibilityResponse": {{"patient", []string{"patient"}}},
	"DetectedIssue":               {{"patient", []string{"patient"}}},
	"DeviceRequest":               {{"subject", []string{"subject"}}, {"performer", []string{"performer"}}},
	"DeviceUseStatement":          {{"subject", []string{"subject"}}},
	"DiagnosticReport":            {{"subject", []string{"subject"}}},
	"DocumentManifest":            {{"subject", []string{"subject"}}, {"author", []string{"author"}}, {"recipient", []string{"recipient"}}},
	"DocumentReference":           {{"subject", []string{"subject"}}, {"author", []string{"author"}}},
	"Encounter":                   {{"patient", []string{"subject"}}},
	"EnrollmentRequest":           {{"subject", []string{"candidate"}}},
	"EpisodeOfCare":               {{"patient", []string{"patient"}}},
	"ExplanationOfBenefit":        {{"patient", []string{"patient"}}, {"payee", []string{"payee.party"}}},
	"FamilyMemberHistory":         {{"patient", []string{"patient"}}},
	"Flag":                        {{"patient", []string{"subject"}}},
	"Goal":                        {{"patient", []string{"subject"}}},
	"Group":                       {{"member", []string{"member.entity"}}},
	"ImagingStudy":                {{"patient", []string{"subject"}}},
	"Immunization":                {{"patient", []string{"patient"}}},
	"ImmunizationEvaluation":      {{"patient", []string{"patient"}}},
	"ImmunizationRecommendation":  {{"patient", []string{"patient"}}},
	"Invoice":                     {{"subject", []string{"subject"}}, {"patient", []string{"subject"}}, {"recipient", []string{"recipient"}}},
	"List":                        {{"subject", []string{"subject"}}, {"source", []string{"source"}}},
	"MeasureReport":               {{"patient", []string{"subject"}}},
	"Media":                       {{"subject", []string{"subject"}}},
	"MedicationAdministration":    {{"patient", []string{"subject"}}, {"performer", []string{"performer.actor"}}, {"subject", []string{"subject"}}},
	"MedicationDispense":          {{"subject", []string{"subject"}}, {"patient", []string{"subject"}}, {"receiver", []string{"receiver"}}},
	"MedicationRequest":           {{"subject", []string{"subject"}}},
	"MedicationStatement":         {{"subject", []string{"subject"}}},
	"MolecularSequence":           {{"patient", []string{"patient"}}},
	"NutritionOrder":              {{"patient", []string{"patient"}}},
	"Observation":                 {{"subject", []string{"subject"}}, {"performer", []string{"performer"}}},
	"Patient":                     {{"link", []string{"link.other"}}},
	"Person":                      {{"patient", []string{"link.target"}}},
	"Procedure":                   {{"patient", []string{"subject"}}, {"performer", []string{"performer.actor"}}},
	"Provenance":                  {{"patient", []string{"target"}}},
	"QuestionnaireResponse":       {{"subject", []string{"subject"}}, {"author", []string{"author"}}},
	"RelatedPerson":               {{"patient", []string{"patient"}}},
	"RequestGroup":                {{"subject", []string{"subject"}}, {"participant", []string{"action.participant"}}},
	"ResearchSubject":             {{"individual", []string{"individual"}}},
	"RiskAssessment":              {{"subject", []string{"subject"}}},
	"Schedule":                    {{"actor", []string{"actor"}}},
	"ServiceRequest":              {{"subject", []string{"subject"}}, {"performer", []string{"performer"}}},
	"Specimen":                    {{"subject", []string{"subject"}}},
	"SupplyDelivery":              {{"patient", []string{"patient"}}},
	"SupplyRequest":               {{"subject", []string{"deliverTo"}}},
	"VisionPrescription":          {{"patient", []string{"patient"}}},
}

// compartmentParam is one search parameter of the compartment definition and the
// reference elements it reads.
type compartmentParam struct {
	Param string
	Paths []string
}

// InPatientCompartmentType reports whether resources of this type can be in a
// patient's compartment: the Patient itself, or a type the definition names with
// parameters.
func InPatientCompartmentType(resourceType string) bool {
	_, ok := patientCompartment[resourceType]
	return ok
}

// PatientRefs returns the ids of the patients whose compartment the resource (its JSON)
// is in through the compartment's search parameters, each once, in the order found.
// A Patient is also in its own compartment; that is the caller's to add (its id is
// the resource's). A reference counts when it names a Patient: relative
// (Patient/123), absolute (https://server/fhir/Patient/123) or versioned
// (Patient/123/_history/2). Logical references (an identifier without a reference),
// contained resources (#p1) and urn:uuid: references cannot be placed and count for
// no one. A resource of a type outside the compartment has none; JSON that does not
// parse is an error.
func PatientRefs(resourceType string, resource []byte) ([]string, error) {
	params, ok := patientCompartment[resourceType]
	if !ok {
		return nil, nil
	}
	var doc map[string]any
	if err := json.Unmarshal(resource, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", resourceType, err)
	}
	var out []string
	seen := map[string]bool{}
	for _, p := range params {
		for _, path := range p.Paths {
			for _, ref := range referencesAt(doc, strings.Split(path, ".")) {
				if id, ok := PatientID(ref); ok && !seen[id] {
					seen[id] = true
					out = append(out, id)
				}
			}
		}
	}
	return out, nil
}

// referencesAt collects the reference strings of the Reference elements at path
// under v, through arrays at any step.
func referencesAt(v any, path []string) []string {
	switch x := v.(type) {
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, referencesAt(e, path)...)
		}
		return out
	case map[string]any:
		if len(path) == 0 {
			if ref, ok := x["reference"].(string); ok {
				return []string{ref}
			}
			return nil
		}
		return referencesAt(x[path[0]], path[1:])
	}
	return nil
}

// PatientID is the id of the Patient a reference names, ok false for a reference to
// anything else or that cannot be placed (see PatientRefs).
func PatientID(ref string) (string, bool) {
	ref = strings.TrimSpace(ref)
	if i := strings.Index(ref, "/_history/"); i >= 0 {
		ref = ref[:i]
	}
	ref = strings.TrimSuffix(ref, "/")
	i := strings.LastIndex(ref, "/")
	if i < 0 {
		return "", false
	}
	id, rest := ref[i+1:], ref[:i]
	if j := strings.LastIndex(rest, "/"); j >= 0 {
		rest = rest[j+1:]
	}
	if rest != "Patient" || id == "" || strings.ContainsAny(id, "?#") {
		return "", false
	}
	return id, true
}
