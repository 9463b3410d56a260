//go:build !integration

package main

import (
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	runWorkerIfAsked()
	os.Exit(m.Run())
}
