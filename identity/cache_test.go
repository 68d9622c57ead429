package identity

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

func TestCacheExpiresEntriesOnItsClock(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := NewCache[string, int](10, func() time.Time { return now })
	c.Put("a", 1, now.Add(time.Second))
	if v, ok := c.Get("a"); !ok || v != 1 {
		t.Fatalf("Get = %v, %v before expiry, want 1, true", v, ok)
	}
	now = now.Add(time.Second)
	if _, ok := c.Get("a"); ok {
		t.Error("hit at the expiry time")
	}
	if c.Len() != 0 {
		t.Error("expired entry kept after a miss")
	}
}

func TestCacheIsBounded(t *testing.T) {
	c := NewCache[string, int](100, nil)
	exp := time.Now().Add(time.Hour)
	for i := range 1000 {
		c.Put(strconv.Itoa(i), i, exp)
	}
	if n := c.Len(); n != 100 {
		t.Errorf("holds %d entries, want 100", n)
	}
	c.Put("99", 0, exp) // replacing an entry evicts nothing
	if n := c.Len(); n != 100 {
		t.Errorf("holds %d entries after a replace, want 100", n)
	}
}

// TestCacheLoadsOnceForABurst: callers that miss one key together share
// one load, and its value.
func TestCacheLoadsOnceForABurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewCache[string, string](10, nil)
		var calls atomic.Int32
		release := make(chan struct{})
		load := func(context.Context) (string, time.Time, error) {
			calls.Add(1)
			<-release
			return "v", time.Now().Add(time.Minute), nil
		}
		var wg sync.WaitGroup
		got := make([]string, 20)
		for i := range got {
			wg.Go(func() {
				v, err := c.Load(t.Context(), "k", load)
				if err != nil {
					t.Error(err)
				}
				got[i] = v
			})
		}
		synctest.Wait() // all twenty are waiting on the one load
		close(release)
		wg.Wait()
		if n := calls.Load(); n != 1 {
			t.Errorf("loaded %d times, want 1", n)
		}
		for i, v := range got {
			if v != "v" {
				t.Errorf("caller %d got %q", i, v)
			}
		}
		if _, err := c.Load(t.Context(), "k", load); err != nil || calls.Load() != 1 {
			t.Errorf("a later Load loaded again (calls %d, err %v)", calls.Load(), err)
		}
	})
}

// TestCacheDeleteDiscardsALoadInFlight: a value read before a change
// committed must not be stored after the change's notification dropped
// the key, or the old value would be served until it expires.
func TestCacheDeleteDiscardsALoadInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewCache[string, string](10, nil)
		release := make(chan struct{})
		go func() {
			v, err := c.Load(t.Context(), "k", func(context.Context) (string, time.Time, error) {
				<-release
				return "old", time.Now().Add(time.Hour), nil
			})
			if v != "old" || err != nil {
				t.Errorf("in-flight Load = %q, %v; want its own value", v, err)
			}
		}()
		synctest.Wait()
		c.Delete("k")
		close(release)
		synctest.Wait()
		if v, ok := c.Get("k"); ok {
			t.Errorf("the load started before Delete was stored: %q", v)
		}
		c2 := NewCache[string, string](10, nil)
		release2 := make(chan struct{})
		go c2.Load(t.Context(), "k", func(context.Context) (string, time.Time, error) {
			<-release2
			return "old", time.Now().Add(time.Hour), nil
		})
		synctest.Wait()
		c2.Clear()
		close(release2)
		synctest.Wait()
		if v, ok := c2.Get("k"); ok {
			t.Errorf("the load started before Clear was stored: %q", v)
		}
	})
}

// TestCacheWaiterOutlivesALeaverLoad: when the caller whose load the others
// wait on goes away, the load fails with its context, and a waiter whose
// own context is alive loads for itself instead of failing.
func TestCacheWaiterOutlivesALeaverLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := NewCache[string, string](10, nil)
		leaverCtx, leave := context.WithCancel(t.Context())
		go c.Load(leaverCtx, "k", func(ctx context.Context) (string, time.Time, error) {
			<-ctx.Done()
			return "", time.Time{}, ctx.Err()
		})
		synctest.Wait()
		done := make(chan struct{})
		go func() {
			defer close(done)
			v, err := c.Load(t.Context(), "k", func(context.Context) (string, time.Time, error) {
				return "mine", time.Now().Add(time.Hour), nil
			})
			if v != "mine" || err != nil {
				t.Errorf("waiter got %q, %v; want its own load", v, err)
			}
		}()
		synctest.Wait()
		leave()
		<-done
	})
}

func TestCacheKeepsNoFailedLoad(t *testing.T) {
	c := NewCache[string, int](10, nil)
	boom := errors.New("boom")
	if _, err := c.Load(t.Context(), "k", func(context.Context) (int, time.Time, error) {
		return 0, time.Now().Add(time.Hour), boom
	}); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	v, err := c.Load(t.Context(), "k", func(context.Context) (int, time.Time, error) {
		return 7, time.Now().Add(time.Hour), nil
	})
	if v != 7 || err != nil {
		t.Errorf("Load after a failure = %d, %v; want a fresh load", v, err)
	}
}

// TestCacheStaleOutlivesAFailedLoad: an expired value stays available to
// Stale while loads fail, and goes with Delete.
func TestCacheStaleOutlivesAFailedLoad(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := NewCache[string, int](10, func() time.Time { return now })
	c.Put("k", 1, now.Add(time.Second))
	now = now.Add(time.Minute)
	if _, err := c.Load(t.Context(), "k", func(context.Context) (int, time.Time, error) {
		return 0, time.Time{}, errors.New("database down")
	}); err == nil {
		t.Fatal("a failed load returned no error")
	}
	if v, ok := c.Stale("k"); !ok || v != 1 {
		t.Errorf("Stale after a failed load = %d, %v; want the last value", v, ok)
	}
	c.Delete("k")
	if _, ok := c.Stale("k"); ok {
		t.Error("Stale after Delete still has the value")
	}
}
