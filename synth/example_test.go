package synth_test

import (
	"fmt"
	"log"

	"fhirlake/synth"
)

func Example() {
	g, err := synth.New(synth.Options{
		Tenants:     []string{"acme", "globex"},
		Patients:    10,
		Seed:        42,
		UpdateRatio: 0.2,
		DeleteRatio: 0.1,
		Controls:    3,
		Malformed:   2,
		Unroutable:  1,
	})
	if err != nil {
		log.Fatal(err)
	}
	total := g.Total()
	for {
		rec, ok := g.Next()
		if !ok {
			break
		}
		_ = rec // produce rec.Key, rec.Value and rec.Headers to Kafka
	}
	c := g.Counts()
	fmt.Println(total == c.Records(), c.Resources == len(g.Expected()))
	// Output: true true
}
