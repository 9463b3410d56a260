package main

import (
	"github.com/spf13/cobra"

	"fhirlake/query/worker"
)

// newServeWorkerCmd is a query worker of `fhirlake serve`: one tenant's
// SQL in a process of its own. The front starts it and writes its
// configuration, that tenant's alone, on its stdin; nobody else should.
func newServeWorkerCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:    "serve-worker",
		Short:  "Serve one tenant's SQL for fhirlake serve (started by it)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return worker.Main(contextOf(cmd), cmd.InOrStdin(), cmd.OutOrStdout(), openStore, g.logger())
		},
	}
}
