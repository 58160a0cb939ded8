package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"syscall"

	"github.com/kvsgo/kvsgo/internal/sigv4"
	"github.com/kvsgo/kvsgo/internal/store"
)

// apiError is an error in the shape the service returns: a status, the
// X-Amzn-ErrorType header ("Name:namespace", as the service sends it; every
// SDK keeps the part before the colon) and {"Message": …}.
type apiError struct {
	Status  int
	Type    string
	Message string
}

func (e *apiError) Error() string { return e.Type + ": " + e.Message }

func errorf(status int, typ, format string, args ...any) *apiError {
	return &apiError{Status: status, Type: typ, Message: fmt.Sprintf(format, args...)}
}

func invalidArgument(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "InvalidArgumentException", format, args...)
}

func notFound(format string, args ...any) *apiError {
	return errorf(http.StatusNotFound, "ResourceNotFoundException", format, args...)
}

// notActive is the service's answer for a stream that is missing or not
// ACTIVE (being created or deleted).
func notActive() *apiError {
	return notFound("The requested stream is not found or not active.")
}

// throttled is ClientLimitExceededException, the service's throttling error.
func throttled(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "ClientLimitExceededException",
		"Kinesis Video Streams has throttled the request because you have exceeded the limit of allowed client calls: "+format+
			" Try making the call later (kvsgo serve --no-throttle turns this off).", args...)
}

// errorNamespace follows the error name in X-Amzn-ErrorType, as the
// service sends it.
const errorNamespace = "https://kinesisvideo.amazonaws.com/doc/2017-09-30/"

// toAPIError maps internal errors to the service's errors.
func toAPIError(err error) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, store.ErrStreamNotFound):
		return notActive()
	case errors.Is(err, store.ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
		// The index too lives on the data directory's disk.
		return errorf(http.StatusServiceUnavailable, "ServiceUnavailable",
			"kvsgo serve cannot store this: the disk of its data directory is full (%v). Free space there, then try again.", err)
	case errors.Is(err, store.ErrFragmentNotFound):
		return notFound("%v", err)
	case errors.Is(err, store.ErrStreamExists):
		return errorf(http.StatusBadRequest, "ResourceInUseException",
			"The stream already exists (a stream of that name may still be DELETING; try again in a moment).")
	case errors.Is(err, store.ErrNotActive):
		return errorf(http.StatusBadRequest, "ResourceInUseException",
			"The stream is not ACTIVE (%v); wait until DescribeStream shows ACTIVE, then try again.", err)
	case errors.Is(err, store.ErrVersionMismatch):
		return errorf(http.StatusBadRequest, "VersionMismatchException", "%v", err)
	case errors.Is(err, store.ErrTooManyTags):
		return errorf(http.StatusBadRequest, "TagsPerResourceExceededLimitException", "%v", err)
	case errors.Is(err, sigv4.ErrMissingAuth):
		return errorf(http.StatusForbidden, "MissingAuthenticationTokenException", "Missing Authentication Token")
	case errors.Is(err, sigv4.ErrMalformedAuth):
		return errorf(http.StatusForbidden, "IncompleteSignatureException", "%v", err)
	case errors.Is(err, sigv4.ErrUnknownKey):
		return errorf(http.StatusForbidden, "UnrecognizedClientException", "The security token included in the request is invalid (%v).", err)
	case errors.Is(err, sigv4.ErrSignature):
		return errorf(http.StatusForbidden, "InvalidSignatureException",
			"The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
	case errors.Is(err, sigv4.ErrExpired):
		return errorf(http.StatusForbidden, "InvalidSignatureException", "Signature expired: %v. Check the clocks of the client and the server.", err)
	}
	return errorf(http.StatusInternalServerError, "InternalFailure", "internal error: %v", err)
}

func writeError(w http.ResponseWriter, err *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Amzn-ErrorType", err.Type+":"+errorNamespace)
	// The media APIs' documentation names this one.
	h.Set("x-amz-ErrorType", err.Type+":"+errorNamespace)
	w.WriteHeader(err.Status)
	_ = json.NewEncoder(w).Encode(map[string]string{"Message": err.Message})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
