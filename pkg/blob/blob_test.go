package blob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/blob"
	"github.com/hookline/hookline/pkg/natsx"
	"github.com/hookline/hookline/pkg/natsx/natstest"
)

// TestStores is the one contract test both stores must pass.
func TestStores(t *testing.T) {
	stores := map[string]func(t *testing.T) blob.Store{
		"dir": func(t *testing.T) blob.Store {
			d, err := blob.NewDir(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
		"nats": func(t *testing.T) blob.Store {
			srv := natstest.Start(t)
			nc, err := nats.Connect(srv.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			js, _ := jetstream.New(nc)
			if err := natsx.Setup(context.Background(), js, natsx.DefaultTopology()); err != nil {
				t.Fatal(err)
			}
			s, err := blob.NewNATS(context.Background(), js, natsx.FilesBucket)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := open(t)
			want := bytes.Repeat([]byte("hookline"), 300_000) // 2.4 MB: several object store chunks
			if err := s.Put(ctx, "0194a1b2-obj", bytes.NewReader(want)); err != nil {
				t.Fatalf("Put: %v", err)
			}
			r, err := s.Open(ctx, "0194a1b2-obj")
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			got, err := io.ReadAll(r)
			r.Close()
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("read back %d bytes (err %v), want %d", len(got), err, len(want))
			}
			if _, err := s.Open(ctx, "missing"); !errors.Is(err, blob.ErrNotFound) {
				t.Fatalf("Open(missing) = %v, want ErrNotFound", err)
			}
			if err := s.Delete(ctx, "0194a1b2-obj"); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if _, err := s.Open(ctx, "0194a1b2-obj"); !errors.Is(err, blob.ErrNotFound) {
				t.Fatalf("Open after Delete = %v, want ErrNotFound", err)
			}
			if err := s.Delete(ctx, "0194a1b2-obj"); err != nil {
				t.Fatalf("Delete twice: %v", err)
			}
		})
	}
}

// smallReads hands out at most 4 KiB per Read, as a body streamed off a socket does.
type smallReads struct{ r io.Reader }

func (s smallReads) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), 4096)]) }

// The NATS store cuts an object into full chunks however the reader hands its bytes out: 1 MiB
// read 4 KiB at a time is 8 chunks of 128 KiB, not 256 (an upload streamed off the network
// made thousands, and stalled the store's publishes).
func TestNATSChunksWhateverTheReads(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if err := natsx.Setup(ctx, js, natsx.DefaultTopology()); err != nil {
		t.Fatal(err)
	}
	s, err := blob.NewNATS(ctx, js, natsx.FilesBucket)
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	if err := s.Put(ctx, "streamed", smallReads{bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(ctx, natsx.FilesBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := obs.GetInfo(ctx, "streamed")
	if err != nil {
		t.Fatal(err)
	}
	if info.Chunks != 8 || info.Size != uint64(len(data)) {
		t.Errorf("1 MiB read 4 KiB at a time stored as %d chunks, %d bytes; want 8 chunks of 128 KiB", info.Chunks, info.Size)
	}
	r, err := s.Open(ctx, "streamed")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, _ := io.ReadAll(r); !bytes.Equal(got, data) {
		t.Errorf("read back %d bytes, not what was stored", len(got))
	}
}
