// Command boltupdate measures durable bbolt commits: each of -goroutines goroutines
// commits small write transactions (one key of -value bytes, keys distinct across
// goroutines, so none conflict) through DB.Update, or DB.Batch with -batch, for
// -duration. bbolt runs with its defaults, so every commit is fdatasync'ed before
// Update returns.
//
// It prints one JSON object: commits, seconds, and the median and 99th percentile of the
// commit latency in nanoseconds. It is the Go peer of the group-commit figures of
// strata-kv-bench (crates/kv-bench), which runs it; it is not a general benchmark tool.
//
// Build in GOPATH mode with Debian's Go sources:
//
//	GOPATH=$repo/bench/go:/usr/share/gocode GO111MODULE=off go build strata-bench/boltupdate
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// result is what the program prints.
type result struct {
	Goroutines int     `json:"goroutines"`
	Batch      bool    `json:"batch"`
	Commits    int     `json:"commits"`
	Seconds    float64 `json:"seconds"`
	P50Ns      int64   `json:"p50_ns"`
	P99Ns      int64   `json:"p99_ns"`
}

func main() {
	dir := flag.String("dir", "", "directory for the database file (default: a new temporary one)")
	goroutines := flag.Int("goroutines", 1, "how many goroutines commit concurrently")
	duration := flag.Duration("duration", 3*time.Second, "how long to measure")
	valueSize := flag.Int("value", 100, "bytes per value")
	batch := flag.Bool("batch", false, "commit through DB.Batch (bbolt's own group commit) instead of DB.Update")
	flag.Parse()

	if err := run(*dir, *goroutines, *duration, *valueSize, *batch); err != nil {
		fmt.Fprintf(os.Stderr, "boltupdate: %v\n", err)
		os.Exit(1)
	}
}

func run(dir string, goroutines int, duration time.Duration, valueSize int, batch bool) error {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "boltupdate-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	db, err := bolt.Open(filepath.Join(dir, "bench.db"), 0o600, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	bucket := []byte("bench")
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	}); err != nil {
		return err
	}

	commit := db.Update
	if batch {
		commit = db.Batch
	}
	value := make([]byte, valueSize)
	latencies := make([][]time.Duration, goroutines)
	errs := make([]error, goroutines)
	deadline := time.Now().Add(duration)
	start := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			key := make([]byte, 12)
			binary.BigEndian.PutUint32(key, uint32(g))
			for n := uint64(0); time.Now().Before(deadline); n++ {
				binary.BigEndian.PutUint64(key[4:], n)
				began := time.Now()
				err := commit(func(tx *bolt.Tx) error {
					return tx.Bucket(bucket).Put(key, value)
				})
				if err != nil {
					errs[g] = err
					return
				}
				latencies[g] = append(latencies[g], time.Since(began))
			}
		}(g)
	}
	wg.Wait()
	seconds := time.Since(start).Seconds()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}

	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	if len(all) == 0 {
		return fmt.Errorf("no commit finished within %v", duration)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	out := result{
		Goroutines: goroutines,
		Batch:      batch,
		Commits:    len(all),
		Seconds:    seconds,
		P50Ns:      int64(all[len(all)/2]),
		P99Ns:      int64(all[len(all)*99/100]),
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
