/**
 * Whether a base image location is a URL, and what is wrong with it if it is one: pure, so the
 * profile rules (validate) and the download (build) refuse the same URLs with the same words.
 */
export const isUrl = (location: string): boolean => /^[a-z][a-z0-9+.-]*:\/\//i.test(location);

/** Why `location` cannot be downloaded from, or undefined when it can. */
export function baseUrlProblem(location: string): string | undefined {
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    return `"${location}" is not a valid URL; give an https:// URL or a file path`;
  }
  const loopback = ['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
  // Plain http only for a server on this machine (tests, local mirrors): images are code.
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback))
    return `the base image URL ${location} must use https:// (plain http is only accepted on localhost)`;
  return undefined;
}
