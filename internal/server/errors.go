package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/kvsgo/kvsgo/internal/sigv4"
	"github.com/kvsgo/kvsgo/internal/store"
)

// apiError is an error in the shape AWS services return: a status, the
// X-Amzn-ErrorType header and {"message": …}.
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

// toAPIError maps internal errors to the service's errors.
func toAPIError(err error) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, store.ErrStreamNotFound):
		return notFound("The requested stream is not found or not active.")
	case errors.Is(err, store.ErrFragmentNotFound):
		return notFound("%v", err)
	case errors.Is(err, store.ErrStreamExists):
		return errorf(http.StatusBadRequest, "ResourceInUseException", "The stream already exists.")
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
	h.Set("X-Amzn-ErrorType", err.Type)
	h.Set("x-amz-ErrorType", err.Type)
	w.WriteHeader(err.Status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": err.Message})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
