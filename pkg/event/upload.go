package event

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// UploadCompleted is the event type the ingress publishes for each upload.
const UploadCompleted = "upload.completed"

// Upload is the file an upload stored: the answer of POST /upload_file/webhook_id/{id}, and
// the data of its upload.completed event together with uploaded_at and download_url.
type Upload struct {
	FileID      uuid.UUID `json:"file_id"`
	EventID     string    `json:"event_id"`
	WebhookID   uuid.UUID `json:"webhook_id"`
	FileName    string    `json:"file_name"`
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type"`
	SHA256      string    `json:"sha256"`
}

// UploadData is the data of an upload.completed event, as the processor reads it.
type UploadData struct {
	Upload
	UploadedAt  string `json:"uploaded_at"`
	DownloadURL string `json:"download_url,omitempty"`
}

// EncodeUpload writes the data of u's upload.completed event. Its keys are in sorted order, as
// receivers have always seen them (the body is rendered from the raw data).
func EncodeUpload(u Upload, uploadedAt time.Time, downloadURL string) ([]byte, error) {
	return json.Marshal(map[string]any{"uploaded_at": uploadedAt.UTC().Format(time.RFC3339), "download_url": downloadURL,
		"file_id": u.FileID, "event_id": u.EventID, "webhook_id": u.WebhookID, "file_name": u.FileName,
		"size": u.Size, "content_type": u.ContentType, "sha256": u.SHA256})
}
