package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"fhirlake/lake"
	"fhirlake/sink"
)

// tenantEnv is the name of a `stack env` variable of a tenant.
func tenantEnv(tenant, what string) string {
	return "FHIRLAKE_TENANT_" + strings.ToUpper(strings.ReplaceAll(tenant, "-", "_")) + "_" + what
}

func tenantBucket(tenant string) string {
	if b := os.Getenv(tenantEnv(tenant, "BUCKET")); b != "" {
		return b
	}
	return "fhirlake-" + tenant
}

// tenantStore opens a tenant's bucket under prefix with that tenant's keys.
func tenantStore(ctx context.Context, tenant, prefix string) (*sink.S3, error) {
	return sink.NewS3(ctx, sink.S3Options{
		Bucket:    tenantBucket(tenant),
		Prefix:    prefix,
		Endpoint:  os.Getenv("FHIRLAKE_S3_ENDPOINT"),
		Region:    envOr("FHIRLAKE_S3_REGION", "us-east-1"),
		PathStyle: true,
		AccessKey: os.Getenv(tenantEnv(tenant, "ACCESS_KEY")),
		SecretKey: os.Getenv(tenantEnv(tenant, "SECRET_KEY")),
	})
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// fileStats summarises the sizes of a set of objects.
type fileStats struct {
	Files              int
	Bytes              int64
	P50, P90, Max, Min int64
	Datasets           int // distinct speed/<dataset>/ directories
}

func statsOf(objs []sink.Object) fileStats {
	s := fileStats{Files: len(objs)}
	if len(objs) == 0 {
		return s
	}
	sizes := make([]int64, len(objs))
	datasets := map[string]bool{}
	for i, o := range objs {
		sizes[i] = o.Size
		s.Bytes += o.Size
		if rest, ok := strings.CutPrefix(o.Key, lake.SpeedPrefix); ok {
			if ds, _, ok := strings.Cut(rest, "/"); ok {
				datasets[ds] = true
			}
		}
	}
	slices.Sort(sizes)
	s.P50, s.P90 = percentile(sizes, 0.50), percentile(sizes, 0.90)
	s.Min, s.Max = sizes[0], sizes[len(sizes)-1]
	s.Datasets = len(datasets)
	return s
}

// percentile is the nearest-rank percentile of sorted values.
func percentile[T ~int64 | ~float64](sorted []T, q float64) T {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// listAll lists the objects of every store under sub.
func listAll(ctx context.Context, stores map[string]*sink.S3, sub string) (map[string][]sink.Object, error) {
	var mu sync.Mutex
	out := map[string][]sink.Object{}
	g, gctx := errgroup.WithContext(ctx)
	for t, s := range stores {
		g.Go(func() error {
			objs, err := s.List(gctx, sub)
			if err != nil {
				return fmt.Errorf("tenant %s: %w", t, err)
			}
			mu.Lock()
			out[t] = objs
			mu.Unlock()
			return nil
		})
	}
	return out, g.Wait()
}

func joinAll[T any](m map[string][]T) []T {
	var out []T
	for _, v := range m {
		out = append(out, v...)
	}
	return out
}

func onlyDataset(objs []sink.Object, dataset string) []sink.Object {
	var out []sink.Object
	for _, o := range objs {
		if strings.HasPrefix(o.Key, lake.DatasetPrefix(dataset)) {
			out = append(out, o)
		}
	}
	return out
}

// deleteAll removes every object under the stores' prefixes.
func deleteAll(ctx context.Context, stores map[string]*sink.S3) (int, error) {
	all, err := listAll(ctx, stores, "")
	if err != nil {
		return 0, err
	}
	n := 0
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for t, objs := range all {
		for _, o := range objs {
			n++
			g.Go(func() error { return stores[t].Delete(gctx, o.Key) })
		}
	}
	return n, g.Wait()
}

// appearance polls listings and remembers when each object was first seen.
type appearance struct {
	mu    sync.Mutex
	first map[string]time.Time // tenant + "\x00" + key → first seen
	size  map[string]int64
	polls int
	errs  int
	slow  time.Duration // slowest listing round
}

func (a *appearance) poll(ctx context.Context, stores map[string]*sink.S3, sub string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		start := time.Now()
		var wg sync.WaitGroup
		for tn, s := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				objs, err := s.List(lctx, sub)
				cancel()
				seen := time.Now()
				a.mu.Lock()
				defer a.mu.Unlock()
				if err != nil {
					if ctx.Err() == nil {
						a.errs++
					}
					return
				}
				for _, o := range objs {
					k := tn + "\x00" + o.Key
					if _, ok := a.first[k]; !ok {
						a.first[k] = seen
						a.size[k] = o.Size
					}
				}
			}()
		}
		wg.Wait()
		a.mu.Lock()
		a.polls++
		a.slow = max(a.slow, time.Since(start))
		a.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
