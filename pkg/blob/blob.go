// Package blob keeps uploaded bytes: in a JetStream object store bucket by default, so every
// replica on every machine can read them, or in a local directory. Object names are generated
// by the caller (never derived from a client's file name).
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"

	"github.com/nats-io/nats.go/jetstream"
)

// Store keeps objects by name.
type Store interface {
	// Put stores everything r yields under name; once it returns nil the bytes are durable.
	Put(ctx context.Context, name string, r io.Reader) error
	// Open returns the bytes of name; ErrNotFound when there is none.
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	// Delete removes name; deleting a missing object is not an error.
	Delete(ctx context.Context, name string) error
}

// ErrNotFound reports an object name with no bytes.
var ErrNotFound = errors.New("object not found")

// safeName guards the directory store against names that would leave its root.
var safeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$`)

// NATS stores objects in a JetStream object store bucket.
type NATS struct{ os jetstream.ObjectStore }

// NewNATS opens the bucket, which natsx.Setup created.
func NewNATS(ctx context.Context, js jetstream.JetStream, bucket string) (*NATS, error) {
	obs, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		return nil, fmt.Errorf("open object store %s: %w", bucket, err)
	}
	return &NATS{os: obs}, nil
}

func (n *NATS) Put(ctx context.Context, name string, r io.Reader) error {
	if _, err := n.os.Put(ctx, jetstream.ObjectMeta{Name: name}, fullReads{r}); err != nil {
		return fmt.Errorf("put object %s: %w", name, err)
	}
	return nil
}

func (n *NATS) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	r, err := n.os.Get(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get object %s: %w", name, err)
	}
	return r, nil
}

func (n *NATS) Delete(ctx context.Context, name string) error {
	err := n.os.Delete(ctx, name)
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("delete object %s: %w", name, err)
	}
	return nil
}

// Dir stores objects as files in one directory (one machine only).
type Dir struct{ root string }

// NewDir uses root, creating it when missing.
func NewDir(root string) (*Dir, error) {
	if err := os.MkdirAll(root, 0o750); err != nil {
		return nil, fmt.Errorf("create blob dir: %w", err)
	}
	return &Dir{root: root}, nil
}

func (d *Dir) path(name string) (string, error) {
	if !safeName.MatchString(name) {
		return "", fmt.Errorf("object name %q: %w", name, ErrNotFound)
	}
	return filepath.Join(d.root, name), nil
}

func (d *Dir) Put(_ context.Context, name string, r io.Reader) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(d.root, ".upload-*")
	if err != nil {
		return fmt.Errorf("put object %s: %w", name, err)
	}
	defer os.Remove(f.Name()) // a no-op after the rename
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("put object %s: %w", name, err)
	}
	// fsync before the rename so a 200 for an upload means the bytes are on disk.
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("put object %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("put object %s: %w", name, err)
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return fmt.Errorf("put object %s: %w", name, err)
	}
	return nil
}

func (d *Dir) Open(_ context.Context, name string) (io.ReadCloser, error) {
	p, err := d.path(name)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotFound
	}
	return f, err
}

func (d *Dir) Delete(_ context.Context, name string) error {
	p, err := d.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete object %s: %w", name, err)
	}
	return nil
}

// fullReads fills every Read unless the stream ends. The object store makes one chunk, one
// JetStream message, of each Read, and an upload streamed off a socket arrives a few KiB at a
// time: read as it comes, 32 MiB made thousands of chunks, more than the store lets wait for
// their acks (jetstream.ErrTooManyStalledMsgs), instead of 256 of 128 KiB.
type fullReads struct{ r io.Reader }

func (f fullReads) Read(p []byte) (int, error) {
	n, err := io.ReadFull(f.r, p)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF // the last, short chunk
	}
	return n, err
}
