// The HTTP endpoints the page uses besides the WebSocket (docs/http.md): POST /connect
// for a bearer token, DELETE /session, GET /status to tell a dead token from a dead
// server, and files, which go over HTTP so megabytes never cross the chat socket.

/** An error reply of the server: `code` is the line protocol's error code. */
export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

async function errorOf(response) {
  let code = `http-${response.status}`;
  let message = response.statusText;
  let retryAfter;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = String(body.error.code || code);
      message = String(body.error.message || message);
      retryAfter = body.error.retry_after;
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, code, message, retryAfter);
}

function bearer(token) {
  return { Authorization: `Bearer ${token}` };
}

/** Logs in (creating the account on first use): {token, user, new, unread}. */
export async function connect(name, password) {
  const body = { name };
  if (password) body.password = password;
  const r = await fetch("/connect", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!r.ok) throw await errorOf(r);
  return r.json();
}

/** Revokes the token (best effort: the page forgets it either way). */
export async function logout(token) {
  try {
    await fetch("/session", { method: "DELETE", headers: bearer(token) });
  } catch {
    // offline: the token stays valid until a password change, as documented
  }
}

/**
 * "ok" when the token works, "revoked" when the server says it does not (401),
 * "down" when the server cannot be reached or fails otherwise.
 */
export async function probe(token) {
  try {
    const r = await fetch("/status", { headers: bearer(token), cache: "no-store" });
    if (r.ok) return "ok";
    return r.status === 401 ? "revoked" : "down";
  } catch {
    return "down";
  }
}

/** Sends a file to a chat (#general, #room or @user): {id, file}. */
export async function upload(token, to, file) {
  const q = new URLSearchParams({ to, name: file.name || "file" });
  const r = await fetch(`/files?${q}`, {
    method: "POST",
    headers: { ...bearer(token), "Content-Type": "application/octet-stream" },
    body: file,
  });
  if (!r.ok) throw await errorOf(r);
  return r.json();
}

/** A file's bytes as a Blob (a plain link cannot carry the Authorization header). */
export async function download(token, fileId) {
  const r = await fetch(`/files/${encodeURIComponent(fileId)}`, { headers: bearer(token) });
  if (!r.ok) throw await errorOf(r);
  return r.blob();
}
