package httpapi

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// Request bodies are streamed (fasthttp's StreamRequestBody): the server reads at most 8 KiB
// of a body before the handlers run, and nothing is allocated for what a client merely
// declares. A declared Content-Length over the route's limit is a 413 before the key is
// looked at; every route but the upload reads its body only once the key is known, and at
// most MaxBodyBytes of it (a chunked body is cut there); the upload hands its file part to
// the blob store as it arrives. A body left unread (a 401, a 413) closes the connection,
// since its bytes would otherwise be read as the next request.

// uploadFraming is what an upload's body may hold besides the file: boundaries, part headers
// and small fields.
const uploadFraming = 1 << 20

// maxUploadParts bounds the parts of an upload's multipart body (the file and a few fields).
const maxUploadParts = 64

// uploadTimeout bounds an upload from the moment its body is read: the server's ReadTimeout
// (60 s, the whole request) and then the store's and JetStream's acks.
const uploadTimeout = 90 * time.Second

// bodyReadKey marks, in the request's locals, a body read to its end.
const bodyReadKey = "body_read"

// uploadPath is the prefix of the one route whose body may be larger than MaxBodyBytes.
const uploadPath = "/upload_file/"

// bodyLimit is the largest body that method on path may send.
func (a *API) bodyLimit(method, path string) int64 {
	if isUpload(method, path) {
		return a.opts.MaxUploadBytes + uploadFraming
	}
	return a.opts.MaxBodyBytes
}

// isUpload reports the upload route; routing ignores case (Fiber's default), so does this.
func isUpload(method, path string) bool {
	return method == fiber.MethodPost && len(path) >= len(uploadPath) && strings.EqualFold(path[:len(uploadPath)], uploadPath)
}

// headerReceived is fasthttp's hook between a request's headers and its body. For a declared
// Content-Length over the route's limit, which is refused from the header alone (401 without
// a key, else 413), it lowers the server's pre-read from 8 KiB to a couple of bytes, so the
// answer does not wait for a client that trickles.
func (a *API) headerReceived(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
	if n := h.ContentLength(); n > 0 && int64(n) > a.bodyLimit(string(h.Method()), uriPath(h.RequestURI())) {
		return fasthttp.RequestConfig{MaxRequestBodySize: 1}
	}
	return fasthttp.RequestConfig{}
}

// uriPath is the path of a request target, in origin form ("/a?b") or absolute form
// ("http://host/a?b").
func uriPath(uri []byte) string {
	s := string(uri)
	if i := strings.Index(s, "://"); i >= 0 && !strings.HasPrefix(s, "/") {
		s = s[i+3:]
		if j := strings.IndexByte(s, '/'); j >= 0 {
			s = s[j:]
		} else {
			s = "/"
		}
	}
	if i := strings.IndexAny(s, "?#"); i >= 0 {
		s = s[:i]
	}
	return s
}

// tooLarge is the 413 of a body over limit.
func tooLarge(limit int64) error {
	return fail(fiber.StatusRequestEntityTooLarge, "request body over the limit of "+byteCount(limit))
}

// closeUnread runs before every route: a body its route left unread closes the connection
// after the answer, since the server would otherwise read its bytes as the next request.
func closeUnread(c *fiber.Ctx) error {
	err := c.Next()
	if c.Request().Header.ContentLength() != 0 && c.Request().IsBodyStream() && c.Locals(bodyReadKey) == nil {
		c.Response().Header.SetConnectionClose()
	}
	return err
}

// body reads the request body for a handler that wants it, once the key is known: at most
// MaxBodyBytes (413 from a declared Content-Length, or once a chunked body passes it), with a
// gzip or deflate Content-Encoding decoded within the same limit (Fiber's own decoding has
// none). Later calls, and c.Body(), find it in memory.
func (a *API) body(c *fiber.Ctx) ([]byte, error) {
	req := c.Request()
	if !req.IsBodyStream() {
		return req.Body(), nil
	}
	limit := a.opts.MaxBodyBytes
	n := req.Header.ContentLength()
	if int64(n) > limit {
		return nil, tooLarge(limit)
	}
	var buf bytes.Buffer
	if n > 0 {
		buf.Grow(min(n, 64<<10)) // what is declared is not yet sent: grow as bytes arrive
	}
	if _, err := buf.ReadFrom(io.LimitReader(req.BodyStream(), limit+1)); err != nil {
		return nil, fail(fiber.StatusBadRequest, "the request body could not be read")
	}
	if int64(buf.Len()) > limit {
		return nil, tooLarge(limit)
	}
	body := buf.Bytes()
	if enc := strings.ToLower(strings.TrimSpace(c.Get(fiber.HeaderContentEncoding))); enc != "" && enc != "identity" {
		var (
			dec io.Reader
			err error
		)
		switch enc {
		case "gzip":
			dec, err = gzip.NewReader(bytes.NewReader(body))
		case "deflate":
			dec, err = zlib.NewReader(bytes.NewReader(body))
		default:
			return nil, fail(fiber.StatusBadRequest, "Content-Encoding "+quoted([]string{enc})+" is not supported (gzip, deflate or none)")
		}
		if err != nil {
			return nil, fail(fiber.StatusBadRequest, "the request body is not valid "+enc)
		}
		var plain bytes.Buffer
		if _, err := plain.ReadFrom(io.LimitReader(dec, limit+1)); err != nil {
			return nil, fail(fiber.StatusBadRequest, "the request body is not valid "+enc)
		}
		if int64(plain.Len()) > limit {
			return nil, tooLarge(limit)
		}
		req.Header.Del(fiber.HeaderContentEncoding)
		body = plain.Bytes()
	}
	req.SetBodyRaw(body) // ends the stream: the body was read to its end
	c.Locals(bodyReadKey, true)
	return body, nil
}

// readError is a failed read of the request body, or one over a limit: the client's doing.
type readError struct {
	err   error
	limit int64 // > 0: more than limit bytes came
	what  string
}

func (e *readError) Error() string {
	if e.limit > 0 {
		return e.what + " over the limit of " + byteCount(e.limit)
	}
	return "read " + e.what + ": " + e.err.Error()
}

func (e *readError) Unwrap() error { return e.err }

// capped reads r and fails with a readError once more than max bytes came; every other read
// error becomes a readError too, unless it is one already.
type capped struct {
	r    io.Reader
	n    int64
	max  int64
	what string // "request body", "file"
}

func (l *capped) Read(p []byte) (int, error) {
	if room := l.max - l.n + 1; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.n > l.max {
		return 0, &readError{limit: l.max, what: l.what}
	}
	var re *readError
	if err != nil && err != io.EOF && !errors.As(err, &re) {
		err = &readError{err: err, what: l.what}
	}
	return n, err
}

// uploadFault is the answer to a failed upload: 413 for a body or file over its limit, 400
// for a body that could not be read, err itself otherwise (the blob store's).
func uploadFault(err error) error {
	var re *readError
	switch {
	case errors.As(err, &re) && re.limit > 0:
		if re.what == "file" {
			return fail(fiber.StatusRequestEntityTooLarge, "file over the upload limit of "+byteCount(re.limit))
		}
		return tooLarge(re.limit)
	case errors.As(err, &re):
		return fail(fiber.StatusBadRequest, "the upload could not be read as multipart/form-data: "+re.err.Error())
	}
	return err
}

// receiveFile reads an upload's multipart body part by part and hands the "file" part to put
// as it arrives, its bytes cut at MaxUploadBytes; other parts are skipped, at most
// maxUploadParts in all. It returns the file's size once the whole body is read, so the
// connection may carry the next request. Nothing of the file is held in memory.
func (a *API) receiveFile(c *fiber.Ctx, put func(p *multipart.Part, file io.Reader) error) (int64, error) {
	mt, params, err := mime.ParseMediaType(c.Get(fiber.HeaderContentType))
	if err != nil || mt != fiber.MIMEMultipartForm || params["boundary"] == "" {
		return 0, fail(fiber.StatusBadRequest, "the upload must be multipart/form-data with a file field")
	}
	src := c.Request().BodyStream()
	if src == nil { // a body already in memory
		src = bytes.NewReader(c.Request().Body())
	}
	limit := a.bodyLimit(c.Method(), c.Path())
	if int64(c.Request().Header.ContentLength()) > limit {
		return 0, tooLarge(limit)
	}
	body := &capped{r: src, max: limit, what: "request body"}
	mr := multipart.NewReader(body, params["boundary"])
	size := int64(-1)
	for parts := 0; ; parts++ {
		p, err := mr.NextPart() // skips what is left of the part before
		if err == io.EOF {
			break
		}
		if err != nil {
			var re *readError
			if !errors.As(err, &re) {
				err = &readError{err: err, what: "request body"}
			}
			return 0, uploadFault(err)
		}
		if parts == maxUploadParts {
			return 0, fail(fiber.StatusBadRequest, "the upload has more than "+itoa(maxUploadParts)+" parts")
		}
		if size >= 0 || p.FormName() != "file" || p.FileName() == "" {
			continue
		}
		file := &capped{r: p, max: a.opts.MaxUploadBytes, what: "file"}
		if err := put(p, file); err != nil {
			return 0, uploadFault(err)
		}
		size = file.n
	}
	if size < 0 {
		return 0, fieldError("file", "is required (multipart field \"file\")")
	}
	if _, err := io.Copy(io.Discard, body); err != nil { // the epilogue, if any
		return 0, uploadFault(err)
	}
	c.Locals(bodyReadKey, true)
	return size, nil
}
