package synth

// Code systems and the small value sets the generator draws from. The codes
// are real (LOINC, SNOMED CT, RxNorm, UCUM, OMB race and ethnicity) so that
// views and dashboards built on the demo data look like the real thing.

const (
	sysLOINC       = "http://loinc.org"
	sysSNOMED      = "http://snomed.info/sct"
	sysRxNorm      = "http://www.nlm.nih.gov/research/umls/rxnorm"
	sysUCUM        = "http://unitsofmeasure.org"
	sysActCode     = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	sysObsCategory = "http://terminology.hl7.org/CodeSystem/observation-category"
	sysCondClin    = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	sysCondVer     = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
	sysCondCat     = "http://terminology.hl7.org/CodeSystem/condition-category"
	sysV2ID        = "http://terminology.hl7.org/CodeSystem/v2-0203"
	sysOMB         = "urn:oid:2.16.840.1.113883.6.238"

	extRace      = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
	extEthnicity = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
	extBirthSex  = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"

	profileR4Notification  = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4"
	profileR4Status        = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4"
	profileR4BNotification = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification"

	// topicURL is the SubscriptionTopic every tenant's subscription uses.
	topicURL = "http://example.org/fhir/SubscriptionTopic/patient-record-changes"
)

type coding struct{ code, display string }

type encounterType struct {
	coding
	class coding // v3 ActCode
}

var encounterTypes = [...]encounterType{
	{coding{"185349003", "Encounter for check up (procedure)"}, coding{"AMB", "ambulatory"}},
	{coding{"162673000", "General examination of patient (procedure)"}, coding{"AMB", "ambulatory"}},
	{coding{"185345009", "Encounter for symptom (procedure)"}, coding{"AMB", "ambulatory"}},
	{coding{"50849002", "Emergency room admission (procedure)"}, coding{"EMER", "emergency"}},
	{coding{"183452005", "Emergency hospital admission (procedure)"}, coding{"IMP", "inpatient encounter"}},
	{coding{"390906007", "Follow-up encounter (procedure)"}, coding{"VR", "virtual"}},
}

// observationKind describes one LOINC observation. Panels have components
// instead of a value.
type observationKind struct {
	coding
	lab        bool
	unit, ucum string
	lo, hi     float64
	decimals   int
	components []observationComponent
}

type observationComponent struct {
	coding
	lo, hi float64
}

// The first numVitals kinds are vital signs, the rest laboratory results.
const (
	obsHeight = iota
	obsWeight
	obsBMI
	obsHeartRate
	obsBloodPressure
	numVitals
)

var observationKinds = [...]observationKind{
	obsHeight:    {coding: coding{"8302-2", "Body height"}, unit: "cm", ucum: "cm", lo: 150, hi: 195, decimals: 1},
	obsWeight:    {coding: coding{"29463-7", "Body weight"}, unit: "kg", ucum: "kg", lo: 50, hi: 120, decimals: 1},
	obsBMI:       {coding: coding{"39156-5", "Body mass index (BMI) [Ratio]"}, unit: "kg/m2", ucum: "kg/m2", lo: 18, hi: 40, decimals: 1},
	obsHeartRate: {coding: coding{"8867-4", "Heart rate"}, unit: "beats/minute", ucum: "/min", lo: 55, hi: 100, decimals: 0},
	obsBloodPressure: {coding: coding{"85354-9", "Blood pressure panel with all children optional"}, unit: "mm[Hg]", ucum: "mm[Hg]", decimals: 0,
		components: []observationComponent{
			{coding{"8480-6", "Systolic blood pressure"}, 100, 160},
			{coding{"8462-4", "Diastolic blood pressure"}, 60, 100},
		}},
	{coding: coding{"2339-0", "Glucose [Mass/volume] in Blood"}, lab: true, unit: "mg/dL", ucum: "mg/dL", lo: 70, hi: 200, decimals: 0},
	{coding: coding{"4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"}, lab: true, unit: "%", ucum: "%", lo: 4.5, hi: 10, decimals: 1},
	{coding: coding{"2093-3", "Cholesterol [Mass/volume] in Serum or Plasma"}, lab: true, unit: "mg/dL", ucum: "mg/dL", lo: 140, hi: 280, decimals: 0},
	{coding: coding{"718-7", "Hemoglobin [Mass/volume] in Blood"}, lab: true, unit: "g/dL", ucum: "g/dL", lo: 11, hi: 17, decimals: 1},
}

var conditionCodes = [...]coding{
	{"44054006", "Diabetes mellitus type 2 (disorder)"},
	{"38341003", "Hypertensive disorder, systemic arterial (disorder)"},
	{"55822004", "Hyperlipidemia (disorder)"},
	{"195967001", "Asthma (disorder)"},
	{"10509002", "Acute bronchitis (disorder)"},
	{"162864005", "Body mass index 30+ - obesity (finding)"},
	{"444814009", "Viral sinusitis (disorder)"},
	{"271737000", "Anemia (disorder)"},
}

type medication struct {
	coding
	dosage string
}

var medications = [...]medication{
	{coding{"860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet"}, "Take 1 tablet by mouth daily with the evening meal"},
	{coding{"314076", "lisinopril 10 MG Oral Tablet"}, "Take 1 tablet by mouth daily"},
	{coding{"197361", "amlodipine 5 MG Oral Tablet"}, "Take 1 tablet by mouth daily"},
	{coding{"310798", "Hydrochlorothiazide 25 MG Oral Tablet"}, "Take 1 tablet by mouth every morning"},
	{coding{"259255", "atorvastatin 80 MG Oral Tablet"}, "Take 1 tablet by mouth at bedtime"},
	{coding{"745679", "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"}, "Inhale 2 puffs every 4 to 6 hours as needed"},
	{coding{"313782", "Acetaminophen 325 MG Oral Tablet"}, "Take 2 tablets by mouth every 6 hours as needed for pain"},
	{coding{"308182", "Amoxicillin 250 MG Oral Capsule"}, "Take 1 capsule by mouth three times daily for 10 days"},
}

var races = [...]coding{
	{"1002-5", "American Indian or Alaska Native"},
	{"2028-9", "Asian"},
	{"2054-5", "Black or African American"},
	{"2076-8", "Native Hawaiian or Other Pacific Islander"},
	{"2106-3", "White"},
}

var ethnicities = [...]coding{
	{"2135-2", "Hispanic or Latino"},
	{"2186-5", "Not Hispanic or Latino"},
}

var (
	givenFemale = [...]string{"Mary", "Patricia", "Jennifer", "Linda", "Elizabeth", "Maria", "Susan", "Aisha", "Mei", "Priya", "Sofia", "Zoë"}
	givenMale   = [...]string{"James", "John", "Robert", "Michael", "David", "Wei", "Carlos", "Ahmed", "Raj", "Liam", "Noah", "José"}
	families    = [...]string{"Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis", "Rodriguez", "Martinez", "Nguyen", "Kim", "Patel", "Chen", "O'Brien", "Müller", "Peña"}
	streets     = [...]string{"Main St", "Oak Ave", "Maple Dr", "Cedar Ln", "Elm St", "Pine Rd", "Washington Blvd", "Lake Shore Dr"}
)

type place struct{ city, state, zip string }

var places = [...]place{
	{"Boston", "MA", "02110"},
	{"Springfield", "IL", "62701"},
	{"Austin", "TX", "73301"},
	{"Portland", "OR", "97201"},
	{"Madison", "WI", "53703"},
	{"Denver", "CO", "80202"},
	{"Atlanta", "GA", "30303"},
	{"Seattle", "WA", "98101"},
}

// Status progressions by version (index 0 is version 1).
var (
	encounterStatus  = [...]string{"in-progress", "finished", "finished"}
	vitalStatus      = [...]string{"final", "amended", "corrected"}
	labStatus        = [...]string{"preliminary", "final", "amended"}
	medicationStatus = [...]string{"active", "on-hold", "stopped"}
)
