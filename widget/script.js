// mailsync widget: the settings UI and card panel arrive with the widget issue. Until then the
// widget loads, identifies itself and answers every Kommo callback with true.
define(['jquery'], function ($) {
  'use strict';
  return function () {
    var self = this;
    this.callbacks = {
      render: function () { return true; },
      init: function () { return true; },
      bind_actions: function () { return true; },
      settings: function () { return true; },
      onSave: function () { return true; },
      destroy: function () {}
    };
    return this;
  };
});
