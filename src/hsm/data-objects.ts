/** CKA_APPLICATION of every data object the service creates (checkpoint ring, markers, the probe's). */
export const DATA_APPLICATION = 'vbi-postage-meter';
