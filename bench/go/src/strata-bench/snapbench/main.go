// Command snapbench measures containerd's snapshot metastore (snapshots/storage on bbolt)
// the way a snapshotter uses it: every operation in a transaction of its own, from
// -goroutines goroutines sharing one MetaStore. Reads (stat, get) run in a read-only
// transaction that is rolled back, as containerd's overlay snapshotter does for Stat and
// Mounts; writes (create, commit, remove) in a writable transaction that commits, which
// bbolt syncs before Commit returns.
//
// The operations are those of containerd's own Benchmarks (metastore_bench_test.go), which
// run them all inside one open transaction; this program is their per-transaction twin.
// After a setup transaction (an active and a committed snapshot on a committed base, and
// an active snapshot on a 10-deep committed chain), it reads commands from stdin, one per
// line, "<operation> <duration>" (say "Commit 200ms"), runs that operation from every
// goroutine for at most the duration, and answers with one line of JSON: the count, the
// seconds the run took, and the median and 99th percentile latency in nanoseconds. It exits
// at the end of stdin. The operations:
//
//	StatActive     GetInfo of the active snapshot
//	StatCommitted  GetInfo of the committed snapshot
//	CreateActive   CreateSnapshot of a new active snapshot with no parent
//	Commit         CommitActive of the oldest uncommitted snapshot CreateActive made
//	Remove         Remove of the oldest snapshot Commit made
//	GetActive      GetSnapshot of the active snapshot on the 10-deep chain
//
// Each goroutine creates, commits and removes snapshots of its own. Commit and Remove work
// through what the operation before them left; the first goroutine to run out ends the run
// for all, so every counted operation ran with all goroutines busy.
//
// It is the Go peer of strata-snapshots-bench (crates/snapshots-bench), which drives it
// and runs the same operation on strata right after each command, so both meet the same
// disk; it is not a general tool.
//
// Build in GOPATH mode with Debian's Go sources:
//
//	GOPATH=$repo/bench/go:/usr/share/gocode GO111MODULE=off go build strata-bench/snapbench
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/storage"
)

// result is the answer to one command.
type result struct {
	Op      string  `json:"op"`
	Count   int     `json:"count"`
	Seconds float64 `json:"seconds"`
	P50Ns   int64   `json:"p50_ns"`
	P99Ns   int64   `json:"p99_ns"`
}

// op is one measured operation.
type op struct {
	writable bool
	// run does goroutine g's next operation inside the transaction in ctx.
	run func(ctx context.Context, g int) error
	// left, when set, says whether goroutine g has anything left to run on.
	left func(g int) bool
	// done, when set, records that goroutine g's operation succeeded.
	done func(g int)
}

func main() {
	dir := flag.String("dir", "", "directory for the database file (default: a new temporary one)")
	goroutines := flag.Int("goroutines", 1, "how many goroutines run operations concurrently")
	flag.Parse()

	if err := run(*dir, *goroutines); err != nil {
		fmt.Fprintf(os.Stderr, "snapbench: %v\n", err)
		os.Exit(1)
	}
}

func run(dir string, goroutines int) error {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "snapbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	ms, err := storage.NewMetaStore(filepath.Join(dir, "metadata.db"))
	if err != nil {
		return err
	}
	defer ms.Close()
	if err := inTransaction(context.Background(), ms, true, setup); err != nil {
		return fmt.Errorf("setup: %w", err)
	}

	ops := operations(goroutines)
	commands := bufio.NewScanner(os.Stdin)
	answers := json.NewEncoder(os.Stdout)
	for commands.Scan() {
		var name, span string
		if _, err := fmt.Sscan(commands.Text(), &name, &span); err != nil {
			return fmt.Errorf("command %q: %w", commands.Text(), err)
		}
		duration, err := time.ParseDuration(span)
		if err != nil {
			return fmt.Errorf("command %q: %w", commands.Text(), err)
		}
		o, ok := ops[name]
		if !ok {
			return fmt.Errorf("command %q: no such operation", commands.Text())
		}
		r, err := measure(ms, o, goroutines, duration)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		r.Op = name
		if err := answers.Encode(r); err != nil {
			return err
		}
	}
	return commands.Err()
}

// operations returns the operations by name, with the counters that tie create, commit
// and remove together: each goroutine's snapshots created, committed and removed so far.
func operations(goroutines int) map[string]op {
	created := make([]int, goroutines)
	committed := make([]int, goroutines)
	removed := make([]int, goroutines)
	read := func(fn func(ctx context.Context) error) op {
		return op{run: func(ctx context.Context, g int) error { return fn(ctx) }}
	}
	return map[string]op{
		"StatActive": read(func(ctx context.Context) error {
			_, _, _, err := storage.GetInfo(ctx, "active")
			return err
		}),
		"StatCommitted": read(func(ctx context.Context) error {
			_, _, _, err := storage.GetInfo(ctx, "committed")
			return err
		}),
		"GetActive": read(func(ctx context.Context) error {
			_, err := storage.GetSnapshot(ctx, "chain-active")
			return err
		}),
		"CreateActive": {
			writable: true,
			run: func(ctx context.Context, g int) error {
				return create(ctx, activeKey(g, created[g]), "")
			},
			done: func(g int) { created[g]++ },
		},
		"Commit": {
			writable: true,
			left:     func(g int) bool { return committed[g] < created[g] },
			run: func(ctx context.Context, g int) error {
				return commit(ctx, activeKey(g, committed[g]), committedKey(g, committed[g]))
			},
			done: func(g int) { committed[g]++ },
		},
		"Remove": {
			writable: true,
			left:     func(g int) bool { return removed[g] < committed[g] },
			run: func(ctx context.Context, g int) error {
				_, _, err := storage.Remove(ctx, committedKey(g, removed[g]))
				return err
			},
			done: func(g int) { removed[g]++ },
		},
	}
}

// setup creates what the reads read, as containerd's benchmarks set it up: "active" and
// "committed" on the committed "base", and "chain-active" on a chain of 10 committed
// snapshots, base-1 (no parent) to base-10.
func setup(ctx context.Context) error {
	steps := []func() error{
		func() error { return create(ctx, "bottom", "") },
		func() error { return commit(ctx, "bottom", "base") },
		func() error { return create(ctx, "active", "base") },
		func() error { return create(ctx, "tmp", "base") },
		func() error { return commit(ctx, "tmp", "committed") },
	}
	base := ""
	for i := 1; i <= 10; i++ {
		parent, name := base, fmt.Sprintf("base-%d", i)
		steps = append(steps,
			func() error { return create(ctx, "tmp", parent) },
			func() error { return commit(ctx, "tmp", name) })
		base = name
	}
	steps = append(steps, func() error { return create(ctx, "chain-active", base) })
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func create(ctx context.Context, key, parent string) error {
	_, err := storage.CreateSnapshot(ctx, snapshots.KindActive, key, parent)
	return err
}

func commit(ctx context.Context, key, name string) error {
	_, err := storage.CommitActive(ctx, key, name, snapshots.Usage{})
	return err
}

func activeKey(g, n int) string    { return fmt.Sprintf("active-%d-%d", g, n) }
func committedKey(g, n int) string { return fmt.Sprintf("committed-%d-%d", g, n) }

// inTransaction runs fn in a transaction of its own: committed when writable and fn
// succeeds, rolled back otherwise.
func inTransaction(ctx context.Context, ms *storage.MetaStore, writable bool, fn func(context.Context) error) error {
	ctx, t, err := ms.TransactionContext(ctx, writable)
	if err != nil {
		return err
	}
	if err := fn(ctx); err != nil || !writable {
		t.Rollback()
		return err
	}
	return t.Commit()
}

// measure runs o from the goroutines until duration has passed or one of them has no
// work left, and summarizes the latencies.
func measure(ms *storage.MetaStore, o op, goroutines int, duration time.Duration) (result, error) {
	latencies := make([][]time.Duration, goroutines)
	errs := make([]error, goroutines)
	var stop atomic.Bool
	deadline := time.Now().Add(duration)
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for time.Now().Before(deadline) && !stop.Load() {
				if o.left != nil && !o.left(g) {
					stop.Store(true)
					return
				}
				began := time.Now()
				err := inTransaction(context.Background(), ms, o.writable, func(ctx context.Context) error {
					return o.run(ctx, g)
				})
				if err != nil {
					errs[g] = err
					stop.Store(true)
					return
				}
				latencies[g] = append(latencies[g], time.Since(began))
				if o.done != nil {
					o.done(g)
				}
			}
		}(g)
	}
	wg.Wait()
	seconds := time.Since(start).Seconds()
	var all []time.Duration
	for g, l := range latencies {
		if errs[g] != nil {
			return result{}, errs[g]
		}
		all = append(all, l...)
	}
	r := result{Count: len(all), Seconds: seconds}
	if len(all) > 0 {
		sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
		r.P50Ns = int64(all[len(all)/2])
		r.P99Ns = int64(all[len(all)*99/100])
	}
	return r, nil
}
