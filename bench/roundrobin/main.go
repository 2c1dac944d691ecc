// Command roundrobin times commands in turn, one run of each per round, so
// that a shared machine's load falls on every command alike: the ratios
// between them hold when the absolute times do not (bench/verify-bench.sh).
// Each run's wall time and CPU time (user + system, from the kernel's
// accounting of the child) are kept; it prints, per command, a tab-separated
// line: name, median wall ms, mean wall ms, wall σ ms, median CPU ms.
//
//	roundrobin [-rounds 60] [-warmup 5] NAME=COMMAND... (a COMMAND is split on spaces, run without a shell)
package main

import (
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

type command struct {
	name string
	argv []string
	wall []float64 // ms
	cpu  []float64 // ms
}

func main() {
	rounds := flag.Int("rounds", 60, "timed runs of each command")
	warmup := flag.Int("warmup", 5, "untimed runs of each command first")
	flag.Parse()
	var cmds []*command
	for _, a := range flag.Args() {
		name, line, ok := strings.Cut(a, "=")
		if !ok || name == "" || strings.TrimSpace(line) == "" {
			fmt.Fprintf(os.Stderr, "roundrobin: %q: want NAME=COMMAND\n", a)
			os.Exit(2)
		}
		cmds = append(cmds, &command{name: name, argv: strings.Fields(line)})
	}
	if len(cmds) == 0 {
		fmt.Fprintln(os.Stderr, "usage: roundrobin [-rounds N] [-warmup N] NAME=COMMAND...")
		os.Exit(2)
	}
	for r := 0; r < *warmup+*rounds; r++ {
		for _, c := range cmds {
			wall, cpu, err := run(c.argv)
			if err != nil {
				fmt.Fprintf(os.Stderr, "roundrobin: %s: %v\n", c.name, err)
				os.Exit(1)
			}
			if r >= *warmup {
				c.wall = append(c.wall, wall)
				c.cpu = append(c.cpu, cpu)
			}
		}
	}
	for _, c := range cmds {
		mean, sd := meanSD(c.wall)
		fmt.Printf("%s\t%.3f\t%.3f\t%.3f\t%.3f\n", c.name, median(c.wall), mean, sd, median(c.cpu))
	}
}

// run runs argv once with no stdin and its output discarded.
func run(argv []string) (wallMS, cpuMS float64, err error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, err
	}
	wall := time.Since(start)
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, 0, fmt.Errorf("no rusage")
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return float64(wall) / 1e6, float64(cpu) / 1e6, nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func meanSD(xs []float64) (float64, float64) {
	var sum, sq float64
	for _, x := range xs {
		sum += x
	}
	m := sum / float64(len(xs))
	for _, x := range xs {
		sq += (x - m) * (x - m)
	}
	return m, math.Sqrt(sq / float64(len(xs)))
}
