package sink

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// An S3 store's conditional operations are S3's conditional requests: PutObject
// with If-None-Match: * or If-Match: <ETag>, DeleteObject with If-Match. The
// store evaluates the condition and writes atomically; the tag is the ETag.

func (s *S3) GetTagged(ctx context.Context, key string, w io.Writer) (string, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key)})
	if err != nil {
		return "", fmt.Errorf("get s3://%s/%s%s: %w", s.bucket, s.prefix, key, classifyConditional(err))
	}
	defer out.Body.Close()
	if _, err := io.Copy(w, out.Body); err != nil {
		return "", fmt.Errorf("get s3://%s/%s%s: %w", s.bucket, s.prefix, key, err)
	}
	return aws.ToString(out.ETag), nil
}

func (s *S3) PutIfAbsent(ctx context.Context, key string, body []byte) (string, error) {
	return s.putIf(ctx, key, body, &s3.PutObjectInput{IfNoneMatch: aws.String("*")})
}

func (s *S3) PutIfMatch(ctx context.Context, key string, body []byte, tag string) (string, error) {
	return s.putIf(ctx, key, body, &s3.PutObjectInput{IfMatch: aws.String(tag)})
}

func (s *S3) putIf(ctx context.Context, key string, body []byte, in *s3.PutObjectInput) (string, error) {
	in.Bucket, in.Key = aws.String(s.bucket), aws.String(s.prefix+key)
	in.Body, in.ContentLength = bytes.NewReader(body), aws.Int64(int64(len(body)))
	in.ContentType = aws.String("application/json")
	s.encrypt.apply(in)
	out, err := s.client.PutObject(ctx, in)
	if err = classifyConditional(err); errors.Is(err, fs.ErrNotExist) {
		// If-Match on an object that is gone.
		err = fmt.Errorf("%w: %w", ErrPreconditionFailed, err)
	}
	if err != nil {
		return "", fmt.Errorf("put s3://%s/%s%s: %w", s.bucket, s.prefix, key, err)
	}
	if aws.ToString(out.ETag) == "" {
		return "", fmt.Errorf("put s3://%s/%s%s: the store returned no ETag, which conditional writes need", s.bucket, s.prefix, key)
	}
	return aws.ToString(out.ETag), nil
}

func (s *S3) DeleteIfMatch(ctx context.Context, key, tag string) error {
	_, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + key), IfMatch: aws.String(tag)})
	err = classifyConditional(err)
	switch {
	case err == nil, errors.Is(err, fs.ErrNotExist):
		return nil
	case errors.Is(err, errNotImplemented):
		// A store without conditional deletes: compare, then delete. Another
		// writer may replace the object in between; the caller's object is at
		// worst deleted late, never one it did not read.
		cur, gerr := s.GetTagged(ctx, key, io.Discard)
		switch {
		case errors.Is(gerr, fs.ErrNotExist):
			return nil
		case gerr != nil:
			return gerr
		case cur != tag:
			return fmt.Errorf("delete s3://%s/%s%s: %w", s.bucket, s.prefix, key, ErrPreconditionFailed)
		}
		return s.Delete(ctx, key)
	}
	return fmt.Errorf("delete s3://%s/%s%s: %w", s.bucket, s.prefix, key, err)
}

// errNotImplemented marks a store's refusal of a conditional request it does not
// support.
var errNotImplemented = errors.New("not implemented by the store")

// classifyConditional wraps a failed condition (412, or 409 for a conditional write
// that raced another) as ErrPreconditionFailed, a missing object (404) as
// fs.ErrNotExist and an unsupported condition (501) as errNotImplemented; anything
// else as classify does.
func classifyConditional(err error) error {
	if err == nil {
		return nil
	}
	var api smithy.APIError
	code := ""
	if errors.As(err, &api) {
		code = api.ErrorCode()
	}
	status := 0
	var re interface{ HTTPStatusCode() int }
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	switch {
	case code == "PreconditionFailed" || code == "ConditionalRequestConflict" ||
		status == http.StatusPreconditionFailed || status == http.StatusConflict:
		return fmt.Errorf("%w: %w", ErrPreconditionFailed, err)
	case code == "NoSuchKey" || code == "NotFound" || (status == http.StatusNotFound && code != "NoSuchBucket"):
		return fmt.Errorf("%w: %w", fs.ErrNotExist, err)
	case code == "NotImplemented" || status == http.StatusNotImplemented:
		return fmt.Errorf("%w: %w", errNotImplemented, err)
	}
	return classify(err)
}
