package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// runWorkerIfAsked makes the test binary a query worker when serve's
// supervisor, run by a test in this process, starts it as one (it starts
// os.Executable(), which under go test is the test binary).
//
// With FHIRLAKE_TEST_COMMAND=1 it runs any command, for a test of a command
// that confines its own process (fhirlake query), which the test process
// must not be.
func runWorkerIfAsked() {
	if os.Getenv("FHIRLAKE_TEST_COMMAND") != "1" && (len(os.Args) < 2 || os.Args[1] != "serve-worker") {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	root := newRoot()
	root.SetArgs(os.Args[1:])
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fhirlake:", err)
		os.Exit(1)
	}
	os.Exit(0)
}
