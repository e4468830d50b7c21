package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hookline/hookline/pkg/httpapi"
)

// openLogs opens (creating, appending) access.log and error.log in dir, as the seed's logs/
// had them, for HOOKLINE_LOG_DIR. It returns two nil writers when dir is empty. The caller
// closes both (closeLogs) after everything that writes to them has stopped.
func openLogs(dir string) (access io.WriteCloser, errorLog io.WriteCloser, err error) {
	if dir == "" {
		return nil, nil, nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, nil, fmt.Errorf("HOOKLINE_LOG_DIR=%q: %w", dir, err)
	}
	open := func(name string) (*os.File, error) {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("HOOKLINE_LOG_DIR=%q: %w", dir, err)
		}
		return f, nil
	}
	a, err := open("access.log")
	if err != nil {
		return nil, nil, err
	}
	e, err := open("error.log")
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, e, nil
}

// closeLogs closes what openLogs opened; nil writers are skipped.
func closeLogs(ws ...io.Closer) error {
	var errs []error
	for _, w := range ws {
		if w != nil {
			errs = append(errs, w.Close())
		}
	}
	return errors.Join(errs...)
}

// logHandler wraps a process's handler: every record logged with a request's context gets
// its request_id, and when errorLog is not nil, Warn and Error records also go there as JSON
// (error.log), whatever the level of h.
func logHandler(h slog.Handler, errorLog io.Writer) slog.Handler {
	t := &teeHandler{main: h}
	if errorLog != nil {
		t.errs = slog.NewJSONHandler(errorLog, &slog.HandlerOptions{Level: slog.LevelWarn})
	}
	return t
}

// teeHandler sends each record to main (at main's level) and Warn+ records to errs too.
type teeHandler struct {
	main slog.Handler
	errs slog.Handler // nil without HOOKLINE_LOG_DIR
}

func (t *teeHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return t.main.Enabled(ctx, l) || t.errs != nil && t.errs.Enabled(ctx, l)
}

func (t *teeHandler) Handle(ctx context.Context, r slog.Record) error {
	if id := httpapi.RequestIDFrom(ctx); id != "" {
		r = r.Clone() // the caller's record must not see our attribute
		r.AddAttrs(slog.String("request_id", id))
	}
	var errs []error
	if t.main.Enabled(ctx, r.Level) {
		errs = append(errs, t.main.Handle(ctx, r))
	}
	if t.errs != nil && t.errs.Enabled(ctx, r.Level) {
		errs = append(errs, t.errs.Handle(ctx, r))
	}
	return errors.Join(errs...)
}

func (t *teeHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := &teeHandler{main: t.main.WithAttrs(as)}
	if t.errs != nil {
		n.errs = t.errs.WithAttrs(as)
	}
	return n
}

func (t *teeHandler) WithGroup(name string) slog.Handler {
	n := &teeHandler{main: t.main.WithGroup(name)}
	if t.errs != nil {
		n.errs = t.errs.WithGroup(name)
	}
	return n
}
