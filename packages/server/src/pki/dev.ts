/**
 * Labels of the development tokens of the PKI (like DEV_TOKEN_LABEL for the module): the
 * ceremony and the dev CA server fall back to the dev PINs only for these labels.
 */
export const DEV_CA_LABEL = 'vbi-dev-ca';
export const DEV_VENDOR_LABEL = 'vbi-dev-vendor';
