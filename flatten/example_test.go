package flatten_test

import (
	"fmt"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"fhirlake/flatten"
)

func Example() {
	view, err := flatten.Compile([]byte(`{
		"name": "patient_names",
		"resource": "Patient",
		"select": [
			{"column": [{"name": "id", "path": "getResourceKey()", "type": "id"}]},
			{"forEach": "name", "column": [
				{"name": "idx", "path": "%rowIndex", "type": "integer"},
				{"name": "family", "path": "family", "type": "string"}
			]}
		]
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range view.Schema().Fields() {
		fmt.Println(f.Name, f.Type)
	}

	r, err := flatten.Parse([]byte(`{"resourceType":"Patient","id":"p1","name":[{"family":"Doe"},{"family":"Roe"}]}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	b := view.NewBatch(memory.NewGoAllocator())
	defer b.Release()
	n, err := b.Append(r)
	fmt.Println(n, err)
	rec := b.NewRecordBatch()
	defer rec.Release()
	fmt.Println(rec.Column(2))
	// Output:
	// id utf8
	// idx int64
	// family utf8
	// 2 <nil>
	// ["Doe" "Roe"]
}
