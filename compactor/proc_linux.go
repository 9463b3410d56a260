package compactor

import (
	"os/exec"
	"syscall"
)

// setProcessGroup starts the command in a process group of its own and has the
// kernel kill it when this process dies, so that a killed compactor leaves no dbt
// behind writing into a run nobody will publish.
func setProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// terminate asks the command's process group to stop.
func terminate(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return nil
	}
	return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
}
