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
func runWorkerIfAsked() {
	if len(os.Args) < 2 || os.Args[1] != "serve-worker" {
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
